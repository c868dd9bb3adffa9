// htmx 2 swaps no 4xx/5xx answer and a failed poll stays silent: say so in
// the job panel. A later successful answer replaces the panel, and this note with it.
(() => {
  "use strict";

  function explain(status) {
    if (status === 403) return "You are not allowed to do that (the server answered 403).";
    if (status === 404) return "This image no longer exists (the server answered 404).";
    if (status === 0) return "The server cannot be reached; still trying.";
    return `Something went wrong on the server (HTTP ${status}); still trying.`;
  }

  function show(event, status) {
    // The panel that sent the request (an image's, or a job's), else the image's panel.
    const sender = event.target instanceof Element ? event.target.closest(".mediaopt-panel") : null;
    const panel = sender || document.querySelector("#mediaopt-panel");
    const note = panel && panel.querySelector(".mediaopt-panel-error");
    if (!note) return;
    note.textContent = explain(status);
    note.hidden = false;
  }

  document.addEventListener("htmx:responseError", (event) => {
    show(event, event.detail.xhr ? event.detail.xhr.status : 0);
  });
  document.addEventListener("htmx:sendError", (event) => show(event, 0));
})();
