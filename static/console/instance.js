// The instance page. Its state, buttons, record, log and operations are live parts re-rendered
// by the server (static/console/live.js, instances:detail-live); this script only enables the
// buttons outside those parts for the current state, and runs the health and runtime probes.
"use strict";

(function () {
  const root = document.getElementById("instance");
  if (!root) return;
  const api = root.dataset.api;

  // Buttons inside a live part are rendered enabled or disabled by the server; the others follow
  // the state the header shows, and are disabled while an operation runs.
  function applyState() {
    const stateEl = root.querySelector('[data-testid="state"]');
    const opEl = root.querySelector('[data-testid="operation"]');
    if (!stateEl) return;
    const state = stateEl.textContent.trim();
    const busy = Boolean(opEl && !opEl.classList.contains("hidden"));
    root.querySelectorAll("[data-show-in]").forEach((button) => {
      if (button.closest("[data-live-part]")) return;
      button.disabled = busy || !button.dataset.showIn.split(" ").includes(state);
    });
  }

  async function show(url) {
    const out = document.getElementById("probe-result");
    out.classList.remove("hidden");
    out.textContent = "…";
    const result = await window.Orchestrio.api("GET", url);
    // Sections and a definition list (static/console/readable.js), the raw JSON folded away.
    if (result.status === 200) window.OrchestrioReadable.renderAnswer(out, result.body);
    else out.textContent = window.Orchestrio.errorText(result);
  }

  const probe = document.getElementById("probe");
  if (probe) probe.addEventListener("click", () => show(`${api}/health`));
  const runtime = document.getElementById("runtime-button");
  if (runtime) runtime.addEventListener("click", () => show(`${api}/runtime`));

  root.addEventListener("live:updated", applyState);
  applyState();
})();
