// Keeps a work item's page up to date: reads the hub's server-sent events for the item
// (same origin, so the Content-Security-Policy's connect-src 'self' allows it) and updates
// the state, progress bar and message; reloads the page once the work is final, so the
// download link or the reason appears. Without this script the page refreshes itself.
const LABELS = {
  queued: "Waiting for the datasite", leased: "Starting", running: "Running",
  succeeded: "Ready to download", failed: "Failed", cancelled: "Cancelled", expired: "Expired",
};

const root = document.getElementById("work");
if (root && root.dataset.final !== "true" && "EventSource" in window) {
  const bar = document.getElementById("work-progress");
  const percent = document.getElementById("work-percent");
  const message = document.getElementById("work-message");
  const state = document.getElementById("work-state");
  const source = new EventSource(root.dataset.events);
  let reloading = false;
  const reload = (after) => {
    if (!reloading) {
      reloading = true;
      source.close();
      window.setTimeout(() => window.location.reload(), after);
    }
  };
  source.addEventListener("state", (event) => {
    const view = JSON.parse(event.data);
    const whole = Math.max(0, Math.min(100, Math.round(view.progress * 100)));
    bar.value = whole;
    bar.textContent = `${whole}%`;
    percent.textContent = `${whole}%`;
    message.textContent = view.message ? ` — ${view.message}` : "";
    state.textContent = LABELS[view.state] || view.state;
    state.dataset.state = view.state;
    if (view.final) {
      reload(0);
    }
  });
  // A broken stream (the hub restarted, a proxy cut it): fall back to reloading the page.
  source.addEventListener("error", () => reload(2000));
}
