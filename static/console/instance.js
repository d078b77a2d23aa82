// Live instance page: polls the JSON API (session auth) and updates the record, the running
// operation, the action buttons and the lifecycle log without a reload.
"use strict";

(function () {
  const root = document.getElementById("instance");
  if (!root) return;
  const api = root.dataset.api;
  let lastSeq = parseInt(root.dataset.lastSeq || "0", 10);
  let timer = null;

  function setField(name, value) {
    root.querySelectorAll(`[data-field="${name}"]`).forEach((el) => {
      const text = value === null || value === undefined || value === "" ? "—" : String(value);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  function applyState(record) {
    const busy = Boolean(record.operation);
    root.querySelectorAll("[data-show-in]").forEach((button) => {
      const allowed = button.dataset.showIn.split(" ").includes(record.state);
      button.disabled = busy || !allowed;
    });
    const stateEl = root.querySelector('[data-field="state"]');
    if (stateEl) stateEl.className = `state state-${record.state}`;
    const healthEl = root.querySelector('[data-field="health_status"]');
    if (healthEl) healthEl.className = `health-${record.health_status}`;
    const opEl = root.querySelector('[data-field="operation"]');
    if (opEl) {
      opEl.classList.toggle("hidden", !busy);
      if (busy) opEl.textContent = `${record.operation.kind} ${record.operation.status}…`;
    }
    const errEl = root.querySelector('[data-field="error_message"]');
    if (errEl) {
      errEl.classList.toggle("hidden", !record.error_message);
      errEl.textContent = record.error_message || "";
    }
    for (const name of ["state", "health_status", "plan_id", "instance_type", "provider_instance_id", "ip_address", "last_health_check"]) {
      if (name !== "state" || stateEl) setField(name, record[name]);
    }
  }

  function appendLogs(lines) {
    const log = document.getElementById("log");
    if (!log) return;
    for (const line of lines) {
      const div = document.createElement("div");
      div.className = `lvl-${line.level}`;
      div.dataset.seq = line.seq;
      const time = new Date(line.created_at).toISOString().substring(11, 19);
      div.textContent = `${time} [${line.stage}] ${line.message}`;
      log.appendChild(div);
      lastSeq = Math.max(lastSeq, line.seq);
    }
    if (lines.length) log.scrollTop = log.scrollHeight;
  }

  async function poll() {
    try {
      const record = await window.Orchestrio.api("GET", api);
      if (record.status === 404) {
        setField("state", "destroyed");
        return;
      }
      if (record.status === 200) applyState(record.body);
      const logs = await window.Orchestrio.api("GET", `${api}/logs?after_seq=${lastSeq}&limit=200`);
      if (logs.status === 200) appendLogs(logs.body.results);
      const busy = record.status === 200 && record.body.operation;
      schedule(busy ? 1500 : 5000);
    } catch (e) {
      schedule(5000);
    }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, document.hidden ? Math.max(ms, 10000) : ms);
  }

  async function show(url) {
    const out = document.getElementById("probe-result");
    out.classList.remove("hidden");
    out.textContent = "…";
    const result = await window.Orchestrio.api("GET", url);
    out.textContent = result.status === 200 ? JSON.stringify(result.body, null, 2) : window.Orchestrio.errorText(result);
  }

  const probe = document.getElementById("probe");
  if (probe) probe.addEventListener("click", () => show(`${api}/health`));
  const runtime = document.getElementById("runtime-button");
  if (runtime) runtime.addEventListener("click", () => show(`${api}/runtime`));

  poll();
})();
