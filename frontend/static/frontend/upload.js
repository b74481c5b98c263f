// Upload form: sends the form itself (with a progress bar) and asks for JSON, so a refused
// form shows its errors in place and the chosen file stays chosen (a page reload would drop
// it). Without this script the form posts as usual.
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  // With object storage the file goes straight to the bucket (direct_upload.js).
  if (form.dataset.directUpload) return;
  const progress = document.getElementById("upload-progress");
  const button = form.querySelector("button[type=submit]");

  const showErrors = (errors) => {
    form.querySelectorAll(".form-errors").forEach((box) => {
      const list = errors[box.dataset.field] || [];
      box.replaceChildren(...list.map((e) => {
        const line = document.createElement("p");
        line.className = "error";
        line.textContent = e.message;
        return line;
      }));
    });
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) { progress.hidden = false; progress.value = e.loaded / e.total; }
    });
    request.addEventListener("load", () => {
      button.disabled = false;
      progress.hidden = true;
      let answer = null;
      try { answer = JSON.parse(request.responseText); } catch (e) { answer = null; }
      if (answer && answer.redirect) { window.location.assign(answer.redirect); return; }
      if (answer && answer.errors) { showErrors(answer.errors); return; }
      showErrors({ __all__: [{ message: `the upload failed (HTTP ${request.status}); try again` }] });
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      progress.hidden = true;
      showErrors({ __all__: [{ message: "the upload was interrupted; try again" }] });
    });
    button.disabled = true;
    request.send(new FormData(form));
  });
})();
