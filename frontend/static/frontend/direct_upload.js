// Upload straight to the bucket (object storage only: the form carries data-direct-upload).
// The server signs one URL per part; the parts go from the browser to the bucket, three at
// a time, each retried twice; the server joins them and a worker verifies the file (size,
// content signature, SHA-256) before the video exists. An interrupted upload of the same
// file resumes: the parts the bucket holds are not sent again.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (!form || !form.dataset.directUpload) return;
  const api = form.dataset.directUpload;
  const progress = document.getElementById("upload-progress");
  const button = form.querySelector("button[type=submit]");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const say = (message) => {
    const box = form.querySelector('.form-errors[data-field="__all__"]');
    const line = document.createElement("p");
    line.className = "error";
    line.textContent = message;
    box.replaceChildren(line);
  };
  const json = async (url, options) => {
    const answer = await fetch(url, {
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      ...options,
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      const detail = body.detail || Object.entries(body).map(([k, v]) => `${k}: ${v}`).join("; ");
      throw new Error(detail || `HTTP ${answer.status}`);
    }
    return body;
  };
  const putPart = async (url, blob) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await fetch(url, { method: "PUT", body: blob });
        if (!answer.ok) throw new Error(`the bucket answered HTTP ${answer.status}`);
        const etag = answer.headers.get("ETag");
        if (!etag) throw new Error("the bucket does not expose ETag (its CORS rule must)");
        return etag;
      } catch (error) {
        if (attempt >= 2) throw error;
      }
    }
  };
  const resumeKey = (file) => `mersv-upload:${file.name}:${file.size}:${file.lastModified}`;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) { say("choose a video file"); return; }
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    try {
      let upload = null;
      let done = [];
      const known = window.localStorage.getItem(resumeKey(file));
      if (known) {
        upload = await json(`${api}${known}/`, { method: "GET" }).catch(() => null);
        if (upload && upload.status === "open") done = upload.parts_done;
        else upload = null;
      }
      if (!upload) {
        upload = await json(api, {
          method: "POST",
          body: JSON.stringify({
            name: file.name,
            size: file.size,
            patient_code: form.querySelector("[name=patient_code]").value,
            pixel_size_um: Number(form.querySelector("[name=pixel_size_um]").value),
          }),
        });
        window.localStorage.setItem(resumeKey(file), upload.id);
      }
      const total = done.length + upload.parts.length;
      const parts = [...done];
      const queue = [...upload.parts];
      const worker = async () => {
        while (queue.length) {
          const part = queue.shift();
          const start = (part.part_number - 1) * upload.part_bytes;
          const etag = await putPart(part.url, file.slice(start, start + upload.part_bytes));
          parts.push({ part_number: part.part_number, etag });
          progress.value = parts.length / total;
        }
      };
      await Promise.all([worker(), worker(), worker()]);
      await json(`${api}${upload.id}/complete/`, { method: "POST", body: JSON.stringify({ parts }) });
      window.localStorage.removeItem(resumeKey(file));
      progress.removeAttribute("value"); // indeterminate while the worker verifies
      for (let wait = 1000; ; wait = Math.min(wait * 1.5, 10000)) {
        await new Promise((r) => setTimeout(r, wait));
        const state = await json(`${api}${upload.id}/`, { method: "GET" });
        if (state.status === "ready") { window.location.assign(state.video_url); return; }
        if (state.status === "failed") throw new Error(state.error);
      }
    } catch (error) {
      say(`the upload failed: ${error.message}`);
      button.disabled = false;
      progress.hidden = true;
    }
  });
})();
