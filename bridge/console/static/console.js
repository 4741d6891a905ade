// The console's own behaviour, kept out of the pages (the Content-Security-Policy forbids inline code).
(function () {
  "use strict";
  // Forms with data-confirm ask first (Stop watch, Rotate secret).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form && form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  }, true);
  // The live stream says when the session ended: go to the sign-in page.
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.detail && event.detail.type === "signed-out") {
      window.location.assign("/ui/sign-in");
    }
  });
})();
