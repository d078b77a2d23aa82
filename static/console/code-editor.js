// A code editor over a textarea (the functions pages): monospace, line numbers in a gutter that
// scrolls with the text, and Tab inserts four spaces instead of leaving the field. The textarea
// stays the form field; without JavaScript it is simply there. No inline scripts or styles: the
// console's Content-Security-Policy forbids them.
"use strict";

(function () {
  function attach(textarea) {
    const wrap = document.createElement("div");
    wrap.className = "code-editor";
    const gutter = document.createElement("pre");
    gutter.className = "code-gutter";
    gutter.setAttribute("aria-hidden", "true");
    textarea.parentNode.insertBefore(wrap, textarea);
    wrap.append(gutter, textarea);

    function numbers() {
      const count = textarea.value.split("\n").length;
      if (gutter.dataset.count === String(count)) return;
      gutter.dataset.count = String(count);
      gutter.textContent = Array.from({ length: count }, (_, i) => String(i + 1)).join("\n");
    }
    textarea.addEventListener("input", numbers);
    textarea.addEventListener("scroll", () => { gutter.scrollTop = textarea.scrollTop; });
    textarea.addEventListener("keydown", (event) => {
      if (event.key !== "Tab" || event.shiftKey || event.ctrlKey || event.metaKey || event.altKey) return;
      event.preventDefault();
      const { selectionStart: start, selectionEnd: end, value } = textarea;
      textarea.value = value.slice(0, start) + "    " + value.slice(end);
      textarea.selectionStart = textarea.selectionEnd = start + 4;
      numbers();
    });
    numbers();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("textarea[data-code-editor]").forEach(attach);
  });
})();
