// Live deployment page: status, revision and steps update while a revision is applied.
"use strict";

(function () {
  const root = document.getElementById("deployment");
  if (!root) return;
  const busy = ["provisioning", "updating", "rolling_back", "deleting"];
  async function poll() {
    const result = await window.Orchestrio.api("GET", root.dataset.api);
    if (result.status !== 200) return;
    const d = result.body;
    root.querySelector('[data-field="status"]').textContent = d.status;
    root.querySelector('[data-field="revision"]').textContent = d.revision;
    const error = root.querySelector('[data-field="error"]');
    error.textContent = d.error || "";
    error.classList.toggle("hidden", !d.error);
    for (const step of d.steps) {
      const row = root.querySelector(`tr[data-step="${step.name}"]`);
      if (!row) continue;
      row.querySelector(".step-status").textContent = step.status;
      row.querySelector(".step-message").textContent = step.message;
    }
    if (busy.includes(d.status)) setTimeout(poll, 1500);
    else if (root.dataset.wasBusy) window.location.reload();
    if (busy.includes(d.status)) root.dataset.wasBusy = "1";
  }
  poll();
})();
