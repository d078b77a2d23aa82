// The Chat tab: sends a message to POST /api/v1/instances/{id}/chat asking for
// text/event-stream, and shows the reply as its `delta` events arrive (fetch + ReadableStream).
"use strict";

(function () {
  const form = document.getElementById("chat-form");
  if (!form) return;
  const log = document.getElementById("chat-log");
  const status = document.getElementById("chat-status");
  let conversation = null;

  function bubble(role, text) {
    const item = document.createElement("div");
    item.className = `chat-message chat-${role}`;
    item.textContent = text;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) onEvent(name, JSON.parse(data));
      }
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = form.elements.message.value;
    if (!message) return;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.textContent = "";
    bubble("user", message);
    const reply = bubble("assistant", "");
    const body = { message, model: form.elements.model.value || undefined };
    if (conversation) body.conversation_id = conversation;
    try {
      const response = await fetch(form.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: { Accept: "text/event-stream", "Content-Type": "application/json", "X-CSRFToken": window.Orchestrio.csrfToken() },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch (e) { data = null; }
        reply.remove();
        status.textContent = window.Orchestrio.errorText({ status: response.status, body: data });
        return;
      }
      await readEvents(response, (name, data) => {
        if (name === "delta") reply.textContent += data.text;
        else if (name === "done") {
          conversation = data.conversation_id;
          reply.textContent = data.reply;
          status.textContent = `${data.model} · ${data.skill} · ${data.tokens_in} tokens in, ${data.tokens_out} out · conversation ${data.conversation_id}`;
        } else if (name === "error") status.textContent = data.detail;
      });
      form.elements.message.value = "";
    } catch (e) {
      status.textContent = `the chat failed: ${e}`;
    } finally {
      button.disabled = false;
    }
  });
})();
