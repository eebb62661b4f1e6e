// The burst page, live. While the burst is scheduled, sending or paused, this polls
// the progress view every 2 s and swaps in what it answers: the status and its line,
// the figures, the breakdown, the tab counts, the current page of deliveries (with the
// page's own filters), the actions and the header's buttons; the bar and the chart are
// updated in place. After the first answer in any other status (sent, cancelled) it
// applies that last refresh and stops.
//
// No inline script (CSP): settings come from data- attributes and a json_script block.
// HTML only ever comes from our own server, rendered by the page's own template (every
// member- and staff-supplied string escaped there); plain text goes in as textContent.
(function () {
    "use strict";
    const live = document.getElementById("burst-live");
    if (!live || live.dataset.live !== "1") { return; }
    const url = live.dataset.progressUrl;
    const every = Number(live.dataset.pollMs) || 2000;
    // The status the page was opened in, when its form could be saved then: the
    // server says so once the burst has started and the form is out of date.
    const opened = live.dataset.editable === "1" ? live.dataset.status : "";
    const statusesBlock = document.getElementById("report-chart-statuses");
    const statuses = statusesBlock ? JSON.parse(statusesBlock.textContent) : [];
    const applied = new Map();  // part name -> the HTML last put in
    let buttonsKey = words(live.dataset.buttonsKey);

    function words(text) { return (text || "").trim().split(/\s+/).join(" "); }

    function pollUrl() {
        const page = new URLSearchParams(window.location.search);
        const query = new URLSearchParams();
        for (const name of ["dstatus", "dq", "dpage"]) {
            if (page.get(name)) { query.set(name, page.get(name)); }
        }
        query.set("stage", live.dataset.stage);
        if (opened) { query.set("opened", opened); }
        return url + "?" + query.toString();
    }

    function fragment(html) {
        const template = document.createElement("template");
        template.innerHTML = html;
        return template.content;
    }

    function width(id, part, total) {
        const el = document.getElementById(id);
        if (el) { el.style.width = (total ? part * 100 / total : 0) + "%"; }
    }

    function drawChart() {
        // A report that replaced the "ready" card brings a new canvas: unfold only
        // draws the charts present when the page loaded.
        const canvas = document.getElementById("status-chart");
        if (!canvas || !window.Chart || window.Chart.getChart(canvas)) { return; }
        new window.Chart(canvas, {
            type: canvas.dataset.type,
            data: JSON.parse(canvas.dataset.value),
            options: JSON.parse(canvas.dataset.options),
        });
    }

    function updateChart(counts) {
        const canvas = document.getElementById("status-chart");
        const chart = canvas && window.Chart ? window.Chart.getChart(canvas) : null;
        if (!chart) { return; }
        const shown = statuses.filter((s) => counts[s.key]);
        chart.data.labels = shown.map((s) => s.label);
        chart.data.datasets[0].data = shown.map((s) => counts[s.key]);
        chart.data.datasets[0].backgroundColor = shown.map((s) => s.color);
        chart.update();
    }

    function swapParts(parts) {
        for (const [name, html] of Object.entries(parts)) {
            if (applied.get(name) === html) { continue; }
            const el = live.querySelector('[data-part="' + name + '"]');
            if (el) {
                el.innerHTML = html;
                applied.set(name, html);
            }
        }
    }

    function swapButtons(p) {
        // unfold's header buttons (Alpine sets up the new ones as they are added).
        if (words(p.buttons_key) === buttonsKey) { return; }
        const current = document.querySelector('#header-inner [x-data*="showActions"]');
        const next = fragment(p.buttons_html).firstElementChild;
        if (current && next) {
            current.replaceWith(next);
            buttonsKey = words(p.buttons_key);
        }
    }

    function showNotice(text) {
        const notice = document.getElementById("report-notice");
        if (!notice) { return; }
        notice.textContent = text || "";
        notice.hidden = !text;
    }

    function apply(p) {
        const ready = document.getElementById("burst-ready");
        if (p.stage !== live.dataset.stage && p.parts.report && ready) {
            // A scheduled burst started: the report takes the place of the card.
            ready.replaceWith(fragment(p.parts.report));
            live.dataset.stage = p.stage;
            drawChart();
        } else {
            swapParts(p.parts);
        }
        live.dataset.status = p.status;
        const report = document.getElementById("delivery-report");
        if (report) { report.dataset.status = p.status; }
        const bar = document.getElementById("progress-bar");
        if (bar) { bar.setAttribute("aria-valuenow", p.percent); }
        width("progress-sent", p.sent, p.total);
        width("progress-failed", p.failed, p.total);
        width("progress-skipped", p.skipped, p.total);
        updateChart(p.status_counts);
        swapButtons(p);
        showNotice(p.notice);
    }

    function schedule(wait) {
        window.setTimeout(poll, wait === undefined ? every : wait);
    }

    async function poll() {
        if (document.hidden) {
            // Nobody is looking: look again when the page is shown.
            document.addEventListener("visibilitychange", poll, {once: true});
            return;
        }
        const started = Date.now();
        try {
            const response = await fetch(pollUrl(), {
                headers: {"Accept": "application/json"},
                credentials: "same-origin",
                cache: "no-store",
            });
            if (response.redirected || response.status === 403 || response.status === 404) {
                return;  // signed out (sent to the login page), or the burst is gone
            }
            if (response.ok) {
                const p = await response.json();
                apply(p);
                if (!p.live) {
                    live.dataset.live = "0";
                    return;  // finished: that was the last refresh
                }
            }
        } catch (e) { /* a network hiccup: try again at the next tick */ }
        // Every 2 s from the start of one poll to the next, however long it took.
        schedule(Math.max(250, every - (Date.now() - started)));
    }

    schedule();
})();
