// The console's small amount of JavaScript: copy buttons, confirmations, live-updating panels.
// No inline scripts (the console's Content-Security-Policy forbids them).
"use strict";

(function () {
  // Production names it `__Host-csrftoken` (which no other host can plant); development, `csrftoken`.
  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)__Host-csrftoken=([^;]+)/) || document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // Calls the JSON API with the session cookie; resolves to {status, body}.
  async function api(method, url, body) {
    const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
    const response = await fetch(url, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, body: data };
  }

  function errorText(result) {
    const detail = result.body && result.body.detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".") || "body"}: ${d.msg}`).join("; ");
    return detail || `request failed (HTTP ${result.status})`;
  }

  document.addEventListener("click", (event) => {
    const copy = event.target.closest("[data-copy]");
    if (copy) {
      const source = document.querySelector(copy.dataset.copy);
      if (source) {
        source.select();
        (navigator.clipboard ? navigator.clipboard.writeText(source.value) : Promise.reject())
          .catch(() => document.execCommand("copy"))
          .finally(() => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = "Copy"; }, 1500); });
      }
    }
  });

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  // On a phone the sidebar and an instance's tabs are rows that scroll sideways (console.css):
  // scroll the current item into its row, so the Alerts page does not show "Overview … Billing".
  for (const current of document.querySelectorAll(".sidebar a.active, .tabs a.active")) {
    const row = current.closest("ul, .tabs");
    if (row.scrollWidth > row.clientWidth) {
      const offset = current.getBoundingClientRect().left - row.getBoundingClientRect().left;
      row.scrollLeft += offset - (row.clientWidth - current.offsetWidth) / 2;
    }
  }

  window.Orchestrio = { api, errorText, csrfToken };
})();
