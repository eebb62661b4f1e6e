// The HTML body's editor: unfold's rich-text editor (trix) or the raw HTML.
//
// Both are on the page; only the one in use carries the field's name, so only its
// value is posted. Trix keeps a small set of elements and drops everything else
// (tables, styles, classes, images, comments), so HTML it would damage never goes
// into it: such a body opens, and stays, as raw HTML, with a note saying why.
(function () {
    "use strict";

    const TRIX_ELEMENTS = new Set([
        "DIV", "P", "BR", "STRONG", "B", "EM", "I", "U", "DEL", "S", "STRIKE", "A",
        "H1", "H2", "H3", "H4", "UL", "OL", "LI", "BLOCKQUOTE", "PRE",
    ]);
    const TEMPLATE_TAGS = /\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}|\{#[\s\S]*?#\}/g;

    function parse(html) {
        // DOMParser runs no script and loads nothing.
        return new DOMParser().parseFromString(html, "text/html");
    }

    // What must survive the editor: the text, the template tags (exactly as typed)
    // and the links.
    function signature(html) {
        const doc = parse(html);
        const text = doc.body.textContent.replace(/\s+/g, " ").trim();
        const tags = (html.match(TEMPLATE_TAGS) || []).join("\n");
        const links = Array.from(doc.querySelectorAll("a[href]"), (a) => a.getAttribute("href")).join("\n");
        return JSON.stringify([text, tags, links]);
    }

    // Why trix cannot hold this HTML ("" when it can).
    function markupTrixDrops(html) {
        if (/<!--|<!doctype|<html|<head|<body/i.test(html)) {
            return "a whole document or comments";
        }
        const doc = parse(html);
        for (const element of doc.body.querySelectorAll("*")) {
            if (!TRIX_ELEMENTS.has(element.tagName)) {
                return "<" + element.tagName.toLowerCase() + ">";
            }
            for (const attribute of element.attributes) {
                if (!(element.tagName === "A" && attribute.name === "href")) {
                    return attribute.name + "= attributes";
                }
            }
        }
        if (doc.head.childNodes.length) {
            return "<" + doc.head.firstChild.nodeName.toLowerCase() + ">";
        }
        return "";
    }

    function setUp(root) {
        const name = root.dataset.name;
        const hidden = root.querySelector("[data-editor-pane=rich] input[type=hidden]");
        const editor = root.querySelector("trix-editor");
        const textarea = root.querySelector("[data-editor-pane=raw] textarea");
        const note = root.querySelector("[data-editor-note]");
        const buttons = root.querySelectorAll("[data-editor-mode]");

        function show(mode, message) {
            root.dataset.mode = mode;
            hidden.name = mode === "rich" ? name : "";
            textarea.name = mode === "raw" ? name : "";
            root.querySelector("[data-editor-pane=rich]").hidden = mode !== "rich";
            root.querySelector("[data-editor-pane=raw]").hidden = mode !== "raw";
            buttons.forEach((button) => button.setAttribute("aria-pressed", String(button.dataset.editorMode === mode)));
            note.textContent = message || "";
        }

        // Loads `html` into trix; false (trix left as it was not posted) when trix
        // would lose any of it.
        function loadIntoTrix(html) {
            const dropped = markupTrixDrops(html);
            if (dropped) {
                return "The rich-text editor would drop " + dropped + " from this HTML: it stays raw HTML.";
            }
            editor.value = html; // trix parses it and writes its own HTML into the input
            if (signature(hidden.value) !== signature(html)) {
                return "The rich-text editor would change the text, template tags or links of this HTML: it stays raw HTML.";
            }
            return "";
        }

        buttons.forEach((button) => button.addEventListener("click", function () {
            const wanted = button.dataset.editorMode;
            if (wanted === root.dataset.mode) { return; }
            if (wanted === "raw") {
                textarea.value = hidden.value;
                show("raw");
                return;
            }
            const html = textarea.value;
            const problem = loadIntoTrix(html);
            // Until it is edited, the body is posted exactly as it was typed.
            if (!problem) { hidden.value = html; }
            show(problem ? "raw" : "rich", problem);
        }));

        // Files cannot be attached to a burst's body from the editor.
        editor.addEventListener("trix-file-accept", (event) => event.preventDefault());

        if (root.dataset.mode === "rich") {
            const check = function () {
                const original = textarea.value;
                const problem = original ? loadIntoTrix(original) : "";
                hidden.value = original; // posted unchanged until it is edited
                show(problem ? "raw" : "rich", problem);
                root.dataset.ready = "";
            };
            // Trix may have started before this script: then its editor is there already.
            if (editor.editor) {
                check();
            } else {
                editor.addEventListener("trix-initialize", check, { once: true });
            }
        } else {
            show("raw", textarea.value ? "This HTML uses markup the rich-text editor cannot keep, so it is shown as raw HTML." : "");
            root.dataset.ready = "";
        }
    }

    function start() {
        document.querySelectorAll("[data-html-editor]").forEach(setUp);
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
})();
