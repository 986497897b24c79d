// credvault UI: small conveniences only. Every flow works without this file.
"use strict";
document.addEventListener("submit", function (ev) {
  var btn = ev.submitter || ev.target.querySelector("button[data-confirm]");
  var msg = btn && btn.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});
document.addEventListener("change", function (ev) {
  var el = ev.target;
  if (el.matches && el.matches("select[data-autosubmit]") && el.form) {
    el.form.submit();
  }
});
document.addEventListener("click", function (ev) {
  var a = ev.target.closest && ev.target.closest("a[data-back]");
  if (a && window.history.length > 1) {
    ev.preventDefault();
    window.history.back();
  }
});
