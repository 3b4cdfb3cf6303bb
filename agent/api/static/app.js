// Live queue: re-fetch the server-rendered rows every 5 s so analysts see each other's
// decisions. Rows are HTML escaped by the server; nothing from the data is evaluated here.
(function () {
  const table = document.querySelector("table[data-live]");
  if (!table) return;
  const body = document.getElementById("queue-rows");
  async function refresh() {
    try {
      const r = await fetch(table.dataset.live, {credentials: "same-origin"});
      if (r.ok) body.innerHTML = await r.text();
    } catch (e) { /* keep the last rows on a network hiccup */ }
  }
  setInterval(refresh, 5000);
  document.addEventListener("keydown", (e) => {
    if (e.key === "r" && !(e.target instanceof HTMLInputElement)) refresh();
  });
})();

// Incidents list: one box ticks every open incident of the page, to close a detector's
// learning noise together.
(function () {
  const all = document.getElementById("select-all");
  if (!all) return;
  const boxes = () => document.querySelectorAll("form.bulk-close input[name=incident_id]");
  all.addEventListener("change", () => {
    for (const box of boxes()) box.checked = all.checked;
  });
})();
