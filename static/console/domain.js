// Live custom-domain status: polls until the domain is active, failed or gone.
"use strict";

(function () {
  const root = document.getElementById("domain");
  if (!root) return;
  async function poll() {
    const result = await window.Orchestrio.api("GET", root.dataset.api);
    if (result.status !== 200) return;
    const d = result.body;
    const set = (name, value) => { const el = root.querySelector(`[data-field="${name}"]`); if (el) el.textContent = value || "—"; return el; };
    set("status", d.status);
    set("last_checked_at", d.last_checked_at);
    set("next_check_at", d.next_check_at);
    const error = set("error", d.error);
    if (error) error.classList.toggle("hidden", !d.error);
    if (!["active", "failed"].includes(d.status)) setTimeout(poll, 5000);
  }
  setTimeout(poll, 3000);
})();
