// Readable state (issue 16 item 7): keeps the relative text of <time data-relative> current (the
// server renders the same words, so a page reads without JavaScript), copies DNS records, and
// draws an agent's or a health probe's answer as sections with the raw JSON folded away.
// No inline scripts: the console's Content-Security-Policy forbids them.
"use strict";

(function () {
  // The same words as orchestrio/templatetags/readable.py `relative`.
  function relative(when, now) {
    let seconds = (now - when) / 1000;
    const past = seconds >= 0;
    seconds = Math.abs(seconds);
    if (seconds < 45) return past ? "just now" : "in a moment";
    let amount;
    let unit;
    if (seconds < 3600) { amount = Math.round(seconds / 60) || 1; unit = "min"; }
    else if (seconds < 86400) { amount = Math.round(seconds / 3600); unit = "h"; }
    else if (seconds < 86400 * 60) { amount = Math.round(seconds / 86400); unit = "d"; }
    else return when.toISOString().slice(0, 10);
    if (amount === 60 && unit === "min") { amount = 1; unit = "h"; }
    if (amount === 24 && unit === "h") { amount = 1; unit = "d"; }
    return past ? `${amount} ${unit} ago` : `in ${amount} ${unit}`;
  }

  function refreshTimes(root) {
    const now = Date.now();
    (root || document).querySelectorAll("time[data-relative][datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      const text = relative(when, now);
      if (el.textContent !== text) el.textContent = text;
    });
  }

  // Copy a record's text; where the clipboard API is refused (plain http, old browser), select
  // the text so the user can press Ctrl+C.
  function selectText(el) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy-text]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copyText);
    if (!source) return;
    const text = source.textContent;
    const done = (label) => { button.textContent = label; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => done("Copied"), () => { selectText(source); done("Press Ctrl+C"); });
    } else {
      selectText(source);
      let copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      done(copied ? "Copied" : "Press Ctrl+C");
    }
  });

  // --- An answer (JSON object) as readable sections --------------------------------------------
  const TIME_KEY = /(_at|_time|timestamp|^time|^checked|^started|^since|_check)$/i;
  const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;

  function label(key) {
    const words = String(key).replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim();
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scalar(key, value) {
    if (value === null || value === undefined || value === "") return el("span", { class: "muted" }, "—");
    if (typeof value === "boolean") return el("span", { class: `status status-${value ? "good" : "idle"}` }, value ? "yes" : "no");
    if (typeof value === "string" && (TIME_KEY.test(key) || ISO_TIME.test(value)) && !isNaN(Date.parse(value))) {
      const when = new Date(value);
      const exact = when.toISOString().replace("T", " ").slice(0, 19) + " UTC";
      return el("time", { datetime: value, title: exact, "data-relative": "" }, relative(when, Date.now()));
    }
    if (typeof value === "string" && /^(healthy|unhealthy|running|stopped|ok|error|failed|degraded)$/i.test(value)) {
      const tone = /^(healthy|running|ok)$/i.test(value) ? "good" : /^(stopped)$/i.test(value) ? "idle" : "bad";
      return el("span", { class: `status status-${tone}` }, value);
    }
    if (typeof value === "number" && /_ms$/.test(key)) return el("span", {}, `${value} ms`);
    if (typeof value === "number" && /(seconds|_s)$/.test(key)) return el("span", {}, `${value} s`);
    const text = String(value);
    return text.length > 160 || text.includes("\n") ? el("pre", { class: "code" }, text) : el("span", { class: typeof value === "string" ? "" : "mono" }, text);
  }

  function list(key, items) {
    if (!items.length) return el("span", { class: "muted" }, "none");
    if (items.every((item) => item === null || typeof item !== "object")) {
      const ul = el("ul", { class: "plain" });
      items.forEach((item) => { const li = el("li"); li.append(scalar(key, item)); ul.append(li); });
      return ul;
    }
    // A list of records (log lines, processes…): one table, a column per key.
    const columns = [];
    items.forEach((item) => Object.keys(item && typeof item === "object" && !Array.isArray(item) ? item : { value: item }).forEach((k) => { if (!columns.includes(k)) columns.push(k); }));
    const table = el("table", { class: "table answer-table" });
    const head = el("tr");
    columns.forEach((k) => head.append(el("th", { scope: "col" }, label(k))));
    table.append(el("thead"), el("tbody"));
    table.tHead.append(head);
    items.forEach((item) => {
      const record = item && typeof item === "object" && !Array.isArray(item) ? item : { value: item };
      const tr = el("tr");
      columns.forEach((k) => {
        const td = el("td");
        const v = record[k];
        td.append(v && typeof v === "object" ? el("code", {}, JSON.stringify(v)) : scalar(k, v));
        tr.append(td);
      });
      table.tBodies[0].append(tr);
    });
    const scroll = el("div", { class: "table-scroll" });
    scroll.append(table);
    return scroll;
  }

  // A definition list of an object; nested objects become their own sections (two levels deep,
  // deeper ones are shown as compact JSON).
  function props(object, depth) {
    const dl = el("dl", { class: "props" });
    const sections = [];
    Object.entries(object).forEach(([key, value]) => {
      if (value && typeof value === "object" && !Array.isArray(value) && depth < 2 && Object.keys(value).length) {
        sections.push([key, () => props(value, depth + 1)]);
        return;
      }
      if (Array.isArray(value) && value.some((item) => item && typeof item === "object")) {
        sections.push([key, () => list(key, value)]);
        return;
      }
      dl.append(el("dt", {}, label(key)));
      const dd = el("dd");
      if (Array.isArray(value)) dd.append(list(key, value));
      else if (value && typeof value === "object") dd.append(depth < 2 ? el("span", { class: "muted" }, "—") : el("code", {}, JSON.stringify(value)));
      else dd.append(scalar(key, value));
      dl.append(dd);
    });
    const wrap = el("div");
    if (dl.children.length) wrap.append(dl);
    sections.forEach(([key, value]) => {
      const section = el("section", { "data-section": key });
      section.append(el("h3", {}, label(key)));
      section.append(value());
      wrap.append(section);
    });
    return wrap;
  }

  // Renders `body` into `out` as sections, with the raw JSON in a closed <details>.
  function renderAnswer(out, body) {
    out.replaceChildren();
    if (body && typeof body === "object" && !Array.isArray(body)) out.append(props(body, 0));
    else out.append(scalar("", body));
    const details = el("details", { class: "raw-json" });
    details.append(el("summary", {}, "Raw JSON"));
    details.append(el("pre", { class: "code" }, JSON.stringify(body, null, 2)));
    out.append(details);
  }

  function init() {
    refreshTimes(document);
    setInterval(() => { if (!document.hidden) refreshTimes(document); }, 30000);
    document.addEventListener("live:updated", (event) => refreshTimes(event.target));
  }

  window.OrchestrioReadable = { relative, refreshTimes, renderAnswer };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
