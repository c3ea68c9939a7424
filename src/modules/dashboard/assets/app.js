// Easel dashboard: live updates without a build step.
// - Job progress and outcomes stream over /dashboard/ws (the /ws protocol, authenticated by the session cookie).
// - Page sections marked data-fragment are re-fetched from the server (new rows, counts, images): every
//   data-refresh-ms while the socket is up, every second as the fallback when it is not, and at once when a
//   job on the page finishes.
(() => {
  const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);
  const FALLBACK_MS = 1000;
  const live = document.body.hasAttribute("data-live");
  const indicator = document.querySelector("[data-live-indicator]");
  const subscribed = new Set();
  let socket = null;
  let connected = false;
  let retryMs = 500;
  let leaving = false;

  function relativeTimes(root) {
    const now = Date.now();
    for (const el of root.querySelectorAll("time[data-rel]")) {
      const at = Date.parse(el.getAttribute("datetime"));
      if (Number.isNaN(at)) continue;
      const s = Math.round((now - at) / 1000);
      let text;
      // A time still to come (a key's expiry) shows its date, not "just now".
      if (s < -5) text = new Date(at).toLocaleString();
      else if (s < 5) text = "just now";
      else if (s < 60) text = `${s} s ago`;
      else if (s < 3600) text = `${Math.floor(s / 60)} min ago`;
      else if (s < 86400) text = `${Math.floor(s / 3600)} h ago`;
      else text = new Date(at).toLocaleString();
      if (el.textContent !== text) el.textContent = text;
    }
  }

  function setIndicator() {
    if (!indicator) return;
    indicator.classList.toggle("on", connected);
    indicator.classList.toggle("polling", !connected);
    indicator.textContent = connected ? "Live" : "Polling";
  }

  function jobElements(jobId) {
    return document.querySelectorAll(`[data-job-id="${CSS.escape(jobId)}"]`);
  }

  function setProgress(jobId, progress, message) {
    for (const el of jobElements(jobId)) {
      const bar = el.querySelector("[data-progress]");
      if (bar) {
        bar.value = progress;
        bar.textContent = `${progress}%`;
      }
      const pct = el.querySelector("[data-pct]");
      if (pct) pct.textContent = `${progress}%`;
      const msg = el.querySelector("[data-message]");
      if (msg && message !== undefined) msg.textContent = message ?? "";
    }
  }

  function setStatus(jobId, status) {
    for (const el of jobElements(jobId)) {
      el.dataset.status = status;
      const badge = el.querySelector("[data-status-badge]");
      if (badge) {
        badge.className = `badge s-${status}`;
        badge.textContent = status;
      }
      const bar = el.querySelector("[data-progress]");
      if (bar) bar.className = `bar s-${status}`;
    }
    if (status === "completed") setProgress(jobId, 100);
  }

  function send(message) {
    if (connected) socket.send(JSON.stringify(message));
  }

  function subscribeVisible() {
    if (!connected) return;
    for (const el of document.querySelectorAll("[data-job-id][data-status]")) {
      const id = el.dataset.jobId;
      if (TERMINAL.has(el.dataset.status) || subscribed.has(id)) continue;
      subscribed.add(id);
      send({ type: "subscribe_to_job", jobId: id });
    }
  }

  let refreshSoonTimer = null;
  function refreshSoon() {
    clearTimeout(refreshSoonTimer);
    refreshSoonTimer = setTimeout(() => {
      for (const el of document.querySelectorAll("[data-fragment]")) refresh(el);
    }, 150);
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "subscribed":
        setStatus(frame.jobId, frame.status);
        setProgress(frame.jobId, frame.progress, frame.message);
        break;
      case "job_progress":
        setStatus(frame.jobId, "active");
        setProgress(frame.jobId, frame.progress, frame.message);
        break;
      case "job_completed":
      case "job_partial":
      case "job_failed":
      case "job_cancelled": {
        const status = frame.type.slice(4);
        subscribed.delete(frame.jobId);
        if (jobElements(frame.jobId).length > 0) setStatus(frame.jobId, status);
        refreshSoon();
        break;
      }
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/dashboard/ws`);
    socket.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "connection_confirmed") {
        connected = true;
        retryMs = 500;
        subscribed.clear();
        setIndicator();
        subscribeVisible();
        return;
      }
      onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      connected = false;
      if (leaving) return;
      setIndicator();
      // 4401: the session ended; the next fragment refresh sends the browser to the sign-in page.
      setTimeout(connect, event.code === 4401 ? 10_000 : retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    });
  }

  const inFlight = new WeakSet();
  async function refresh(el) {
    if (inFlight.has(el)) return;
    // Leave a section alone while the user is typing or pressing a button in it.
    if (el.contains(document.activeElement) && document.activeElement !== document.body) return;
    inFlight.add(el);
    try {
      const res = await fetch(el.dataset.fragment, {
        headers: { accept: "text/html" },
        credentials: "same-origin",
      });
      if (res.status === 401) {
        location.href = "/dashboard/login";
        return;
      }
      if (!res.ok) return;
      const html = await res.text();
      if (html !== el.dataset.last) {
        el.dataset.last = html;
        el.innerHTML = html;
        relativeTimes(el);
        subscribeVisible();
      }
    } catch {
      // Offline for a moment: the next tick tries again.
    } finally {
      inFlight.delete(el);
    }
  }

  function schedule(el) {
    const every = Number(el.dataset.refreshMs || 0);
    if (!every) return;
    const tick = () => {
      refresh(el).finally(() => setTimeout(tick, connected ? every : Math.min(every, FALLBACK_MS)));
    };
    setTimeout(tick, connected ? every : FALLBACK_MS);
  }

  relativeTimes(document);
  setInterval(() => relativeTimes(document), 15_000);
  if (live) {
    setIndicator();
    connect();
    // Close cleanly when leaving the page rather than letting the socket die with it.
    addEventListener("pagehide", () => {
      leaving = true;
      socket?.close(1000, "page closed");
    });
    for (const el of document.querySelectorAll("[data-fragment]")) schedule(el);
  }
})();
