// The delivery report of a burst being sent: polls the progress JSON and updates
// the bar, the figures and the chart until the burst leaves "sending", then
// reloads once for the final page. Text only ever goes in through textContent.
(function () {
    "use strict";
    const report = document.getElementById("delivery-report");
    if (!report || report.dataset.status !== "sending") { return; }
    const url = report.dataset.progressUrl;
    const statusesBlock = document.getElementById("report-chart-statuses");
    const statuses = statusesBlock ? JSON.parse(statusesBlock.textContent) : [];
    const fmt = new Intl.NumberFormat();

    function set(id, text) {
        const el = document.getElementById(id);
        if (el) { el.textContent = text; }
    }

    function width(id, part, total) {
        const el = document.getElementById(id);
        if (el) { el.style.width = (total ? part * 100 / total : 0) + "%"; }
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

    function render(p) {
        set("progress-percent", (Math.round(p.percent * 10) / 10) + " %");
        const percent = document.getElementById("progress-percent");
        if (percent) { percent.dataset.percent = p.percent; }
        const bar = document.getElementById("progress-bar");
        if (bar) { bar.setAttribute("aria-valuenow", p.percent); }
        width("progress-sent", p.sent, p.total);
        width("progress-failed", p.failed, p.total);
        width("progress-skipped", p.skipped, p.total);
        set("progress-sent-text", fmt.format(p.sent));
        set("progress-total-text", fmt.format(p.total));
        set("progress-done-text", fmt.format(p.done));
        set("progress-rate", p.rate_display);
        set("progress-eta", p.eta_display);
        set("progress-elapsed", p.elapsed_display);
        const figures = {total: p.total, sent: p.sent, failed: p.failed, pending: p.pending, skipped: p.skipped};
        for (const [key, value] of Object.entries(figures)) {
            const el = document.querySelector('[data-figure="' + key + '"]');
            if (el) { el.textContent = fmt.format(value); }
        }
        const rate = document.querySelector('[data-figure="success_rate"]');
        if (rate) { rate.textContent = p.success_rate + " %"; }
        for (const [key, value] of Object.entries(p.status_counts)) {
            const el = document.querySelector('[data-status-count="' + key + '"]');
            if (el) { el.textContent = fmt.format(value); }
        }
        updateChart(p.status_counts);
    }

    async function poll() {
        try {
            const response = await fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin", cache: "no-store"});
            if (response.ok) {
                const p = await response.json();
                render(p);
                if (p.status !== "sending") {
                    // Finished, paused or cancelled: reload once for the final page
                    // (buttons, deliveries list).
                    set("progress-live", "");
                    window.setTimeout(() => window.location.reload(), 600);
                    return;
                }
            }
        } catch (e) { /* keep polling */ }
        window.setTimeout(poll, 1500);
    }
    window.setTimeout(poll, 1000);
})();
