// Live updates: an EventSource per [data-live] element; each "changed" event refreshes the
// element through htmx (debounced), from data-refresh or the page's own URL.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-live]")) {
    let timer = null;
    const source = new EventSource(el.dataset.live);
    source.addEventListener("changed", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const url = el.dataset.refresh || (location.pathname + location.search);
        const options = {target: el, swap: "innerHTML"};
        if (el.dataset.select) options.select = el.dataset.select;
        htmx.ajax("GET", url, options);
      }, 250);
    });
  }
  document.body.addEventListener("htmx:responseError", (e) => {
    const flash = document.getElementById("flash");
    let text = e.detail.xhr.statusText;
    try { text = JSON.parse(e.detail.xhr.responseText).message || text; } catch (_) {
      const doc = new DOMParser().parseFromString(e.detail.xhr.responseText, "text/html");
      text = (doc.querySelector(".error") || {}).textContent || text;
    }
    flash.innerHTML = "";
    const p = document.createElement("p");
    p.className = "flash error";
    p.setAttribute("role", "alert");
    p.textContent = `Error ${e.detail.xhr.status}: ${text}`;
    flash.appendChild(p);
  });
});
