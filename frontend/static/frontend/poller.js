// One poller for every live page. mersvPoll(url, onAnswer, options) fetches a JSON URL and hands
// each new answer to the page; onAnswer returns false to stop. It polls again after `fastest` ms
// when the answer changed, and waits `factor` times longer each time nothing changed or the
// request failed, up to `slowest`. While the tab is hidden it does not poll at all; when the tab
// shows again it polls at once. A static file with no inline code, as the CSP asks.
"use strict";
window.mersvPoll = function (url, onAnswer, options) {
  const opts = Object.assign({ fastest: 1000, slowest: 10000, factor: 1.5 }, options || {});
  let delay = opts.fastest;
  let timer = null;
  let last = null;
  let stopped = false;
  let busy = false;

  function wait(ms) {
    clearTimeout(timer);
    timer = stopped || document.hidden ? null : setTimeout(poll, ms);
  }

  async function poll() {
    timer = null;
    if (stopped || busy || document.hidden) return;
    busy = true;
    let changed = false;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const text = await response.text();
        changed = text !== last;
        last = text;
        if (changed && onAnswer(JSON.parse(text)) === false) stopped = true;
      }
    } catch (err) { /* a network hiccup: wait longer, then try again */ }
    busy = false;
    delay = changed ? opts.fastest : Math.min(delay * opts.factor, opts.slowest);
    wait(delay);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { clearTimeout(timer); timer = null; return; }
    delay = opts.fastest;
    wait(0);
  });
  wait(delay);
  return { stop() { stopped = true; clearTimeout(timer); } };
};
