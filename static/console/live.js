// Live state on every console page, one mechanism: an element with `data-live="<fragment URL>"`
// re-fetches that server-rendered fragment every `data-live-interval` ms (the setting
// CONSOLE_LIVE_INTERVAL_SECONDS) and swaps in what changed. The fragment is the same template the
// page includes, so the first paint and every update are rendered by the same code.
//
// The fragment answers one or more `[data-live-part="<name>"]` elements; each replaces the inner
// HTML of the element of the same part inside the live root (so one request updates a page's
// header and its tables). A fragment without parts replaces the root's inner HTML.
// Polling pauses while the tab is hidden and resumes at once when it is shown again. It stops on
// 404 (the object is gone: the page says so), when the session has ended (a redirect to login),
// and when the content holds `[data-live-done]` (its state is final, e.g. a finished task).
// After a swap the root fires `live:updated` (page scripts re-bind to the new markup).
// No inline scripts: the console's Content-Security-Policy forbids them.
"use strict";

(function () {
  function start(root) {
    const url = root.dataset.live;
    const interval = Math.max(parseInt(root.dataset.liveInterval || "3000", 10) || 3000, 1000);
    let timer = null;
    let stopped = false;
    let inFlight = false;

    // Each render masks the CSRF token anew: compare without it, or every poll would swap.
    function same(a, b) {
      const strip = (html) => html.replace(/name="csrfmiddlewaretoken" value="[^"]*"/g, "");
      return strip(a) === strip(b);
    }

    function swap(html) {
      const template = document.createElement("template");
      template.innerHTML = html;
      const parts = template.content.querySelectorAll("[data-live-part]");
      let changed = false;
      if (!parts.length) {
        if (!same(root.innerHTML, template.innerHTML)) { root.innerHTML = template.innerHTML; changed = true; }
      }
      parts.forEach((part) => {
        const target = root.querySelector(`[data-live-part="${part.dataset.livePart}"]`);
        if (!target || same(target.innerHTML, part.innerHTML)) return;
        const log = target.matches(".log") ? target : null;
        const atBottom = log && log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        target.innerHTML = part.innerHTML;
        if (atBottom) log.scrollTop = log.scrollHeight;
        changed = true;
      });
      if (changed) root.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
      if (root.querySelector("[data-live-done]")) stop(); // the state is final (a finished task)
    }

    function stop(message) {
      stopped = true;
      clearTimeout(timer);
      if (message) {
        root.dataset.liveStopped = message;
        const note = document.createElement("div");
        note.className = "message message-info";
        note.setAttribute("role", "status");
        note.textContent = message;
        root.prepend(note);
      }
    }

    async function poll() {
      if (stopped || inFlight) return;
      if (document.hidden) return; // visibilitychange polls again when the tab is shown
      inFlight = true;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html", "X-Live": "1" } });
        if (response.redirected && new URL(response.url).pathname.startsWith("/login")) {
          stop("Your session has ended: log in again to see live updates.");
        } else if (response.status === 404) {
          stop("This no longer exists.");
        } else if (response.ok) {
          swap(await response.text());
        }
      } catch (e) {
        // A network blip: try again at the next tick.
      } finally {
        inFlight = false;
        schedule();
      }
    }

    function schedule() {
      clearTimeout(timer);
      if (!stopped && !document.hidden) timer = setTimeout(poll, interval);
    }

    document.addEventListener("visibilitychange", () => {
      if (document.hidden) clearTimeout(timer);
      else poll();
    });
    // A live log opens on its latest lines, and follows them while the reader stays at the bottom.
    root.querySelectorAll(".log[data-live-part]").forEach((log) => { log.scrollTop = log.scrollHeight; });
    if (root.querySelector("[data-live-done]")) stopped = true;
    schedule();
  }

  function init() {
    document.querySelectorAll("[data-live]").forEach(start);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
