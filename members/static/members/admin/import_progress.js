// The member import's progress bar. While a big import runs in a worker, this polls the
// progress view (its URL in data-progress-url) and moves the bar and the figures; once
// the import is over (done, failed, or stopped making progress) it reloads the page,
// which then shows the summary and the rejected rows. No inline script (the admin's CSP).
(function () {
    "use strict";
    const box = document.getElementById("import-progress");
    if (!box || !box.dataset.progressUrl) { return; }
    const every = Number(box.dataset.pollMs) || 1000;
    const number = new Intl.NumberFormat("en-US");

    function text(id, value) {
        const el = document.getElementById(id);
        if (el) { el.textContent = value; }
    }

    function show(state) {
        const percent = Math.max(0, Math.min(100, Number(state.percent) || 0));
        const fill = document.getElementById("import-progress-fill");
        if (fill) { fill.style.width = percent + "%"; }
        const bar = document.getElementById("import-progress-bar");
        if (bar) { bar.setAttribute("aria-valuenow", String(percent)); }
        text("import-progress-done", number.format(state.done || 0));
        text("import-progress-total", number.format(state.total || 0));
        text("import-progress-percent", percent + " %");
    }

    function poll() {
        fetch(box.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
            .then(function (response) {
                if (response.status === 404) { return { finished: true }; }  // expired: the page says so
                if (!response.ok) { throw new Error("progress " + response.status); }
                return response.json();
            })
            .then(function (state) {
                if (state.percent !== undefined) { show(state); }
                if (state.finished) {
                    window.location.reload();
                } else {
                    window.setTimeout(poll, every);
                }
            })
            .catch(function () {
                // A missed answer (a restart, the network): try again a little later.
                window.setTimeout(poll, every * 3);
            });
    }

    window.setTimeout(poll, every);
}());
