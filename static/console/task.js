// Live task page: polls the task until it finishes, updating status and output.
"use strict";

(function () {
  const root = document.getElementById("task");
  if (!root) return;
  const active = ["queued", "running"];

  function set(name, value) {
    const el = root.querySelector(`[data-field="${name}"]`);
    if (!el) return;
    const text = value === null || value === undefined || value === "" ? (name.startsWith("std") ? "" : "—") : String(value);
    if (el.textContent !== text) el.textContent = text;
    return el;
  }

  async function poll() {
    const result = await window.Orchestrio.api("GET", root.dataset.api);
    if (result.status !== 200) return setTimeout(poll, 5000);
    const task = result.body;
    const status = set("status", task.status);
    if (status) status.className = `task-status task-${task.status}`;
    for (const name of ["exit_code", "started_at", "finished_at", "stdout", "stderr"]) set(name, task[name]);
    const error = set("error_message", task.error_message);
    if (error) error.classList.toggle("hidden", !task.error_message);
    const running = active.includes(task.status);
    root.querySelectorAll("[data-active-only]").forEach((b) => { b.disabled = !running; });
    if (running) setTimeout(poll, 1000);
  }

  poll();
})();
