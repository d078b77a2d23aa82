// Row editors over JSON textareas (issue 16 item 7). The textarea stays the form field: the rows
// write its JSON as they change, so the form submits exactly what a person typing JSON would,
// to the same view, and the server validates it as before. Without JavaScript the textarea is
// simply there. "Edit as JSON" shows the textarea again, for power users.
//
//   <textarea data-editor="object">  a JSON object: rows of key = value (with a type per row)
//   <textarea data-editor="rules">   gateway allow rules: an OR-list of rules, each rows of
//                                     claim = value(s) (alternatives separated by commas)
// No inline scripts or styles: the console's Content-Security-Policy forbids them.
"use strict";

(function () {
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (v !== undefined && v !== null) node.setAttribute(k, v); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function button(text, attrs) {
    return el("button", Object.assign({ type: "button", class: "small" }, attrs || {}), text);
  }

  function parse(text, fallback) {
    if (!text.trim()) return { ok: true, value: fallback };
    try { return { ok: true, value: JSON.parse(text) }; } catch (e) { return { ok: false, error: e.message }; }
  }

  // --- The editor shell: rows view and JSON view over one textarea ----------------------------
  function attach(textarea, kind) {
    const field = textarea.closest(".field") || textarea.parentElement;
    const isRules = kind === "rules";
    const empty = isRules ? [] : {};
    const editor = el("div", { class: "kv-editor", "data-kv-editor": kind, "data-for": textarea.id });
    const rows = el("div", { class: "kv-rows" });
    const error = el("div", { class: "kv-error", role: "alert", "data-testid": `${textarea.name}-editor-error` });
    const toolbar = el("div", { class: "kv-toolbar" });
    const add = button(isRules ? "Add a rule" : "Add a row", { "data-kv-add": "" });
    const toggle = button("Edit as JSON", { "data-kv-toggle": "", "aria-pressed": "false" });
    toolbar.append(add, toggle);
    editor.append(rows, toolbar, error);
    textarea.before(editor);
    // The field's label names the rows too (it points at the textarea, hidden in the rows view).
    const fieldLabel = textarea.id ? document.querySelector(`label[for="${textarea.id}"]`) : null;
    if (fieldLabel) {
      if (!fieldLabel.id) fieldLabel.id = `${textarea.id}-label`;
      editor.setAttribute("role", "group");
      editor.setAttribute("aria-labelledby", fieldLabel.id);
    }
    let jsonView = false;
    const build = isRules ? buildRules : buildObject;
    let collect = null;

    function problem(text) {
      error.textContent = text || "";
      editor.dataset.invalid = text ? "true" : "";
    }

    // Rows → textarea. Returns false (and says why) when a row cannot be written as JSON.
    function sync() {
      if (jsonView || !collect) return true;
      const result = collect();
      if (result.error) { problem(result.error); return false; }
      problem("");
      textarea.value = JSON.stringify(result.value, null, 2);
      return true;
    }

    function showRows() {
      const parsed = parse(textarea.value, empty);
      const shapeOk = parsed.ok && (isRules ? Array.isArray(parsed.value) && parsed.value.every((r) => r && typeof r === "object" && !Array.isArray(r))
        : parsed.value && typeof parsed.value === "object" && !Array.isArray(parsed.value));
      if (!shapeOk) {
        problem(parsed.ok ? `Rows need ${isRules ? "a list of rule objects" : "a JSON object"}: fix the JSON first.` : `The JSON is not valid (${parsed.error}): fix it to edit as rows.`);
        return false;
      }
      rows.replaceChildren();
      collect = build(rows, parsed.value, sync);
      jsonView = false;
      textarea.hidden = true;
      rows.hidden = false;
      add.hidden = false;
      toggle.textContent = "Edit as JSON";
      toggle.setAttribute("aria-pressed", "false");
      problem("");
      return true;
    }

    function showJson() {
      if (!sync()) return;
      jsonView = true;
      textarea.hidden = false;
      rows.hidden = true;
      add.hidden = true;
      toggle.textContent = "Edit as rows";
      toggle.setAttribute("aria-pressed", "true");
      textarea.focus();
    }

    toggle.addEventListener("click", () => (jsonView ? showRows() : showJson()));
    add.addEventListener("click", () => { rows.dispatchEvent(new CustomEvent("kv:add")); sync(); });
    rows.addEventListener("input", sync);
    rows.addEventListener("change", sync);
    if (textarea.form) {
      textarea.form.addEventListener("submit", (event) => {
        if (!sync()) { event.preventDefault(); event.stopImmediatePropagation(); error.scrollIntoView({ block: "center" }); }
      }, true);
    }
    // Invalid JSON sent back by the server (with its error) opens in the JSON view.
    if (!showRows()) { jsonView = false; showJson(); problem(""); }
  }

  // --- A JSON object: key = value, with the value's type ---------------------------------------
  const TYPES = [["text", "text"], ["number", "number"], ["boolean", "true/false"], ["null", "null"], ["json", "JSON"]];

  function typeOf(value) {
    if (value === null) return "null";
    if (typeof value === "string") return "text";
    if (typeof value === "number") return "number";
    if (typeof value === "boolean") return "boolean";
    return "json";
  }

  function shown(value, type) {
    if (type === "text") return value;
    if (type === "null") return "";
    if (type === "json") return JSON.stringify(value);
    return String(value);
  }

  function buildObject(rows, object, sync) {
    function addRow(key, value) {
      const type = value === undefined ? "text" : typeOf(value);
      const row = el("div", { class: "kv-row", "data-kv-row": "" });
      const keyInput = el("input", { type: "text", class: "kv-key", "aria-label": "Key", placeholder: "key", spellcheck: "false" });
      keyInput.value = key;
      const valueInput = el("input", { type: "text", class: "kv-value", "aria-label": `Value of ${key || "the new key"}`, placeholder: "value", spellcheck: "false" });
      valueInput.value = value === undefined ? "" : shown(value, type);
      const select = el("select", { class: "kv-type", "aria-label": "Type" });
      TYPES.forEach(([v, text]) => { const option = el("option", { value: v }, text); if (v === type) option.selected = true; select.append(option); });
      valueInput.disabled = type === "null";
      select.addEventListener("change", () => { valueInput.disabled = select.value === "null"; });
      keyInput.addEventListener("input", () => valueInput.setAttribute("aria-label", `Value of ${keyInput.value || "the new key"}`));
      const remove = button("Remove", { class: "small danger", "aria-label": `Remove ${key || "this row"}` });
      remove.addEventListener("click", () => { row.remove(); if (!rows.querySelector("[data-kv-row]")) addRow("", undefined); sync(); });
      row.append(keyInput, valueInput, select, remove);
      rows.append(row);
      return keyInput;
    }
    Object.entries(object).forEach(([k, v]) => addRow(k, v));
    if (!Object.keys(object).length) addRow("", undefined);
    rows.addEventListener("kv:add", () => addRow("", undefined).focus());

    return function collect() {
      const out = {};
      let error = null;
      rows.querySelectorAll("[data-kv-row]").forEach((row) => {
        const [keyInput, valueInput] = row.querySelectorAll("input");
        const type = row.querySelector("select").value;
        const key = keyInput.value.trim();
        const raw = valueInput.value;
        let bad = false;
        let value;
        if (!key && !raw.trim()) { valueInput.removeAttribute("aria-invalid"); keyInput.removeAttribute("aria-invalid"); return; } // a blank row
        if (type === "text") value = raw;
        else if (type === "null") value = null;
        else if (type === "number") { value = Number(raw); bad = raw.trim() === "" || !Number.isFinite(value); if (bad) error = error || `${key || "a row"}: "${raw}" is not a number`; }
        else if (type === "boolean") { bad = !/^(true|false)$/i.test(raw.trim()); value = raw.trim().toLowerCase() === "true"; if (bad) error = error || `${key || "a row"}: write true or false`; }
        else { try { value = JSON.parse(raw); } catch (e) { bad = true; error = error || `${key || "a row"}: the value is not valid JSON`; } }
        valueInput.setAttribute("aria-invalid", bad ? "true" : "false");
        const keyBad = !key || Object.prototype.hasOwnProperty.call(out, key);
        keyInput.setAttribute("aria-invalid", keyBad ? "true" : "false");
        if (!key) error = error || "a row has a value but no key";
        else if (keyBad) error = error || `the key "${key}" appears twice`;
        if (!bad && !keyBad) out[key] = value;
      });
      return error ? { error } : { value: out };
    };
  }

  // --- Allow rules: [ {claim: value | [values]}, … ] -------------------------------------------
  function buildRules(rows, rules, sync) {
    function addCondition(group, claim, expected) {
      const list = group.querySelector(".rule-conditions");
      const row = el("div", { class: "rule-row", "data-rule-row": "" });
      const claimInput = el("input", { type: "text", class: "rule-claim", "aria-label": "Claim", placeholder: "claim, e.g. repository", spellcheck: "false" });
      claimInput.value = claim;
      const values = expected === undefined ? [] : Array.isArray(expected) ? expected : [expected];
      const valueInput = el("input", { type: "text", class: "rule-values", "aria-label": `Allowed values of ${claim || "the claim"}`, placeholder: "value, or several separated by commas", spellcheck: "false" });
      valueInput.value = values.map(String).join(", ");
      // An untouched row keeps its exact JSON (numbers, booleans, commas inside a value).
      if (expected !== undefined) { row.dataset.original = JSON.stringify(expected); row.dataset.originalText = valueInput.value; }
      const remove = button("Remove", { class: "small danger", "aria-label": `Remove the condition on ${claim || "this claim"}` });
      remove.addEventListener("click", () => {
        row.remove();
        if (!list.querySelector("[data-rule-row]")) group.remove();
        renumber();
        sync();
      });
      row.append(claimInput, el("span", { class: "rule-eq", "aria-hidden": "true" }, "="), valueInput, remove);
      list.append(row);
      return claimInput;
    }

    function renumber() {
      rows.querySelectorAll(".rule-or").forEach((n) => n.remove());
      const groups = rows.querySelectorAll("[data-rule]");
      groups.forEach((group, index) => {
        group.querySelector(".rule-group-name").textContent = `Rule ${index + 1}: every condition must match`;
        if (index > 0) group.before(el("div", { class: "rule-or" }, "or"));
      });
      let note = rows.querySelector(".kv-empty");
      if (!groups.length && !note) rows.append(el("p", { class: "kv-empty" }, "No rules: anyone who authenticates gets in."));
      if (groups.length && note) note.remove();
    }

    function addGroup(rule) {
      const group = el("div", { class: "rule-group", "data-rule": "" });
      const title = el("div", { class: "rule-group-title" });
      title.append(el("span", { class: "rule-group-name" }));
      const more = button("Add a condition");
      more.addEventListener("click", () => { addCondition(group, "", undefined).focus(); sync(); });
      title.append(more);
      group.append(title, el("div", { class: "rule-conditions" }));
      rows.append(group);
      const entries = Object.entries(rule);
      if (entries.length) entries.forEach(([claim, expected]) => addCondition(group, claim, expected));
      else addCondition(group, "", undefined);
      renumber();
      return group;
    }

    rules.forEach((rule) => addGroup(rule));
    renumber();
    rows.addEventListener("kv:add", () => { addGroup({}).querySelector("input").focus(); });

    return function collect() {
      const out = [];
      let error = null;
      rows.querySelectorAll("[data-rule]").forEach((group, index) => {
        const rule = {};
        group.querySelectorAll("[data-rule-row]").forEach((row) => {
          const [claimInput, valueInput] = row.querySelectorAll("input");
          const claim = claimInput.value.trim();
          const text = valueInput.value;
          if (!claim && !text.trim()) return;
          let expected;
          if (row.dataset.original !== undefined && text === row.dataset.originalText) expected = JSON.parse(row.dataset.original);
          else {
            const parts = text.split(",").map((part) => part.trim()).filter(Boolean);
            expected = parts.length === 1 ? parts[0] : parts;
          }
          const valueBad = Array.isArray(expected) ? !expected.length : expected === "";
          const claimBad = !claim || Object.prototype.hasOwnProperty.call(rule, claim);
          claimInput.setAttribute("aria-invalid", claimBad ? "true" : "false");
          valueInput.setAttribute("aria-invalid", valueBad ? "true" : "false");
          if (!claim) error = error || `rule ${index + 1}: a condition has values but no claim`;
          else if (claimBad) error = error || `rule ${index + 1}: the claim "${claim}" appears twice`;
          else if (valueBad) error = error || `rule ${index + 1}: give ${claim} at least one value`;
          else rule[claim] = expected;
        });
        if (Object.keys(rule).length) out.push(rule);
      });
      return error ? { error } : { value: out };
    };
  }

  function init() {
    document.querySelectorAll("textarea[data-editor]").forEach((textarea) => attach(textarea, textarea.dataset.editor));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
