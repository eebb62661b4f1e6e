// A segment's rules as rows of field / op / value (members/admin/audiences.py).
//
// The rules textarea is the field that is posted: the rows are written into it as JSON
// at every change, and it stays the editor without JavaScript (or for rules that rows
// cannot show). Whenever the rules change, the count of matching members and a few of
// them are asked of the preview view (debounced) and shown under the rules. Everything
// the server or staff wrote is put on the page as text, never as HTML.
(function () {
    "use strict";

    const DEBOUNCE_MS = 300;
    const MONTHS = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ];
    const ICON_CLASSES =
        "material-symbols-outlined absolute pointer-events-none mr-[12px] right-0 top-1/2 -translate-y-1/2 text-base-400 dark:text-base-500";

    function element(tag, attributes, text) {
        const node = document.createElement(tag);
        for (const [name, value] of Object.entries(attributes || {})) {
            if (value !== null && value !== undefined && value !== false) {
                node.setAttribute(name, value === true ? "" : String(value));
            }
        }
        if (text !== undefined) {
            node.textContent = text;
        }
        return node;
    }

    function countText(count) {
        if (count === 0) {
            return "No member matches";
        }
        if (count === 1) {
            return "1 member matches";
        }
        return count.toLocaleString("en-US") + " members match";
    }

    function isInteger(value) {
        return typeof value === "number" && Number.isInteger(value);
    }

    function setUp(root) {
        const config = JSON.parse(document.getElementById("segment-rules-config").textContent);
        const fields = new Map(config.fields.map((field) => [field.name, field]));
        const noValueOps = new Set(config.noValueOps);
        const textarea = root.querySelector("[data-rules-pane=json] textarea");
        const rowsPane = root.querySelector("[data-rules-pane=rows]");
        const jsonPane = root.querySelector("[data-rules-pane=json]");
        const note = root.querySelector("[data-rules-note]");
        const modes = root.querySelector("[data-rules-modes]");
        const form = root.closest("form");

        // --- building blocks --------------------------------------------------------------

        function selectBox(options, value, label, extraClass) {
            const wrap = element("div", { class: "relative segment-rules-select " + (extraClass || "") });
            const select = element("select", { class: config.classes.select, "aria-label": label });
            for (const option of options) {
                const node = element("option", { value: String(option.value) }, option.label);
                select.append(node);
            }
            if (value !== undefined && value !== null) {
                select.value = String(value);
            }
            wrap.append(select, element("span", { class: ICON_CLASSES, "aria-hidden": "true" }, "expand_more"));
            return { wrap: wrap, select: select };
        }

        function idOptions(choices, value, what) {
            const options = choices.map((choice) => ({ value: choice.id, label: choice.label }));
            if (isInteger(value) && !choices.some((choice) => choice.id === value)) {
                options.unshift({ value: value, label: what + " #" + value });
            }
            if (!options.length) {
                options.push({ value: "", label: "No " + what.toLowerCase() + " yet" });
            }
            return options;
        }

        // The value's control for a field's kind: { node, read() } (null for ops without a value).
        function valueControl(field, value) {
            const kind = field.kind;
            if (kind === "bool") {
                const box = selectBox(
                    [{ value: "true", label: "yes" }, { value: "false", label: "no" }],
                    value === false ? "false" : "true",
                    "Value"
                );
                return { node: box.wrap, input: box.select, read: () => box.select.value === "true" };
            }
            if (kind === "month") {
                const box = selectBox(
                    MONTHS.map((name, index) => ({ value: index + 1, label: name })),
                    isInteger(value) ? value : 1,
                    "Month"
                );
                return { node: box.wrap, input: box.select, read: () => Number(box.select.value) };
            }
            if (kind === "list" || kind === "burst") {
                const what = kind === "list" ? "List" : "Burst";
                const choices = kind === "list" ? config.lists : config.bursts;
                const truncated = kind === "list" ? config.listsTruncated : config.burstsTruncated;
                if (!truncated) {
                    const box = selectBox(idOptions(choices, value, what), value, what, "segment-rules-wide");
                    return {
                        node: box.wrap,
                        input: box.select,
                        read: () => (box.select.value === "" ? null : Number(box.select.value)),
                    };
                }
                // Too many to list: the number, with the newest as suggestions.
                const listId = "segment-rules-" + kind + "-choices";
                if (!document.getElementById(listId)) {
                    const datalist = element("datalist", { id: listId });
                    choices.forEach((choice) => datalist.append(element("option", { value: choice.id }, choice.label)));
                    root.append(datalist);
                }
                const input = element("input", {
                    type: "number", min: "1", step: "1", list: listId,
                    class: config.classes.input + " segment-rules-number-input",
                    "aria-label": what + " number", placeholder: what + " number",
                });
                input.value = isInteger(value) ? String(value) : "";
                return { node: input, input: input, read: () => (input.value === "" ? null : Number(input.value)) };
            }
            const input = element("input", {
                type: kind === "date" ? "date" : "text",
                class: config.classes.input + " segment-rules-text",
                "aria-label": "Value",
                maxlength: kind === "text" ? "254" : null,
                placeholder: kind === "text" ? "text" : null,
            });
            input.value = typeof value === "string" ? value : "";
            return { node: input, input: input, read: () => input.value };
        }

        function defaultValue(field) {
            if (field.kind === "bool") return true;
            if (field.kind === "month") return 1;
            if (field.kind === "list") return config.lists.length ? config.lists[0].id : null;
            if (field.kind === "burst") return config.bursts.length ? config.bursts[0].id : null;
            return "";
        }

        // --- the rows ---------------------------------------------------------------------------

        const header = element("div", { class: "segment-rules-header" });
        const match = selectBox(
            [{ value: "all", label: "all" }, { value: "any", label: "any" }],
            "all",
            "Match all or any of the conditions"
        );
        header.append(element("span", {}, "Members who match"), match.wrap, element("span", {}, "of these conditions:"));
        const list = element("ol", { class: "segment-rules-list", "data-rules-rows": true });
        const none = element("p", { class: "segment-rules-none" });
        const add = element("button", { type: "button", class: config.classes.secondaryButton, "data-rules-add": true });
        add.append(element("span", { class: "material-symbols-outlined", "aria-hidden": "true" }, "add"), "Add a condition");
        rowsPane.append(header, list, none, add);

        function renumber() {
            list.querySelectorAll("[data-rules-number]").forEach((node, index) => {
                node.textContent = index + 1 + ".";
            });
            none.hidden = list.children.length > 0;
            none.textContent =
                match.select.value === "any"
                    ? "No condition yet: no member matches. Add one."
                    : "No condition yet: every member matches. Add one to narrow it down.";
        }

        function addRow(condition) {
            const row = element("li", { class: "segment-rules-row", "data-rules-row": true });
            let field = fields.get(condition.field);
            const fieldBox = selectBox(
                config.fields.map((f) => ({ value: f.name, label: f.label })),
                field.name,
                "Field",
                "segment-rules-field"
            );
            const opSlot = element("div", { class: "segment-rules-slot" });
            const valueSlot = element("div", { class: "segment-rules-slot" });
            const remove = element("button", {
                type: "button",
                class: config.classes.iconButton,
                title: "Remove this condition",
                "aria-label": "Remove this condition",
                "data-rules-remove": true,
            });
            remove.append(element("span", { class: "material-symbols-outlined", "aria-hidden": "true" }, "close"));
            row.append(element("span", { class: "segment-rules-number", "data-rules-number": true }), fieldBox.wrap, opSlot, valueSlot, remove);

            let opBox = null;
            let control = null;

            function showOps(op) {
                opBox = selectBox(field.ops, op, "Condition", "segment-rules-op");
                opSlot.replaceChildren(opBox.wrap);
                opBox.select.addEventListener("change", () => {
                    showValue(control ? control.read() : defaultValue(field));
                    changed();
                });
            }

            function showValue(value) {
                if (noValueOps.has(opBox.select.value)) {
                    control = null;
                    valueSlot.replaceChildren();
                    return;
                }
                if (control) {
                    return; // keep what was typed when the op changes between ops with a value
                }
                control = valueControl(field, value);
                valueSlot.replaceChildren(control.node);
                control.input.addEventListener(control.input.tagName === "SELECT" ? "change" : "input", changed);
            }

            fieldBox.select.addEventListener("change", () => {
                field = fields.get(fieldBox.select.value);
                control = null;
                showOps(field.ops[0].value);
                showValue(defaultValue(field));
                changed();
            });
            remove.addEventListener("click", () => {
                row.remove();
                renumber();
                changed();
                add.focus();
            });

            row.read = () => {
                const condition = { field: field.name, op: opBox.select.value };
                if (control) {
                    condition.value = control.read();
                }
                return condition;
            };
            showOps(condition.op);
            showValue(condition.value);
            list.append(row);
            renumber();
            return row;
        }

        function readRows() {
            return {
                match: match.select.value,
                conditions: Array.from(list.children, (row) => row.read()),
            };
        }

        function loadRows(rules) {
            list.replaceChildren();
            match.select.value = rules.match || "all";
            (rules.conditions || []).forEach(addRow);
            renumber();
        }

        // Why rows cannot show these rules exactly ("" when they can): rules typed as
        // JSON are never silently changed by switching to rows.
        function notRows(rules) {
            if (rules === null || typeof rules !== "object" || Array.isArray(rules)) {
                return "they are not an object";
            }
            if (Object.keys(rules).some((key) => key !== "match" && key !== "conditions")) {
                return "an unknown key";
            }
            if (rules.match !== undefined && rules.match !== "all" && rules.match !== "any") {
                return "match is neither all nor any";
            }
            if (rules.conditions !== undefined && !Array.isArray(rules.conditions)) {
                return "conditions is not a list";
            }
            for (const [index, condition] of (rules.conditions || []).entries()) {
                const where = "condition " + (index + 1);
                if (condition === null || typeof condition !== "object" || Array.isArray(condition)) {
                    return where + " is not an object";
                }
                if (Object.keys(condition).some((key) => !["field", "op", "value"].includes(key))) {
                    return where + " has an unknown key";
                }
                const field = fields.get(condition.field);
                if (!field) {
                    return where + " has an unknown field";
                }
                if (!field.ops.some((op) => op.value === condition.op)) {
                    return where + " has an unknown op";
                }
                const value = condition.value;
                if (noValueOps.has(condition.op)) {
                    if (value !== undefined && value !== null && value !== "") {
                        return where + " has a value its op does not take";
                    }
                    continue;
                }
                const fits = {
                    bool: typeof value === "boolean",
                    month: isInteger(value) && value >= 1 && value <= 12,
                    date: typeof value === "string",
                    text: typeof value === "string",
                    list: isInteger(value) || value === null || value === undefined,
                    burst: isInteger(value) || value === null || value === undefined,
                }[field.kind];
                if (!fits) {
                    return where + " has a value of the wrong type";
                }
            }
            return "";
        }

        function parsed() {
            const text = textarea.value.trim();
            if (!text) {
                return { rules: { match: "all", conditions: [] }, problem: "" };
            }
            try {
                const rules = JSON.parse(text);
                return { rules: rules, problem: notRows(rules) };
            } catch (error) {
                return { rules: null, problem: "they are not valid JSON" };
            }
        }

        // --- modes -------------------------------------------------------------------------------

        function show(mode, message) {
            root.dataset.mode = mode;
            rowsPane.hidden = mode !== "rows";
            jsonPane.hidden = mode !== "json";
            modes.querySelectorAll("[data-rules-mode]").forEach((button) => {
                button.setAttribute("aria-pressed", String(button.dataset.rulesMode === mode));
            });
            note.textContent = message || "";
            note.hidden = !message;
        }

        function toRows() {
            const { rules, problem } = parsed();
            if (problem) {
                show("json", "These rules cannot be shown as rows (" + problem + "): edit them here as JSON.");
                return false;
            }
            loadRows(rules);
            show("rows");
            return true;
        }

        modes.querySelectorAll("[data-rules-mode]").forEach((button) => {
            button.addEventListener("click", () => {
                if (button.dataset.rulesMode === "rows") {
                    toRows();
                } else {
                    show("json");
                }
            });
        });
        match.select.addEventListener("change", () => {
            renumber();
            changed();
        });
        add.addEventListener("click", () => {
            const field = config.fields[0];
            const row = addRow({ field: field.name, op: field.ops[0].value, value: defaultValue(field) });
            changed();
            row.querySelector("select").focus();
        });
        textarea.addEventListener("input", schedulePreview);

        // --- the count and the sample --------------------------------------------------------------

        const preview = document.querySelector("[data-segment-preview]");
        let timer = null;
        let asked = 0;

        function changed() {
            textarea.value = JSON.stringify(readRows(), null, 2);
            schedulePreview();
        }

        function schedulePreview() {
            if (!preview) {
                return;
            }
            clearTimeout(timer);
            preview.querySelector("[data-preview-busy]").hidden = false;
            timer = setTimeout(askPreview, DEBOUNCE_MS);
        }

        async function askPreview() {
            const mine = ++asked;
            const token = form && form.querySelector("input[name=csrfmiddlewaretoken]");
            let answer;
            try {
                const response = await fetch(config.previewUrl, {
                    method: "POST",
                    credentials: "same-origin",
                    headers: { "X-CSRFToken": token ? token.value : "", Accept: "application/json" },
                    body: new URLSearchParams({ rules: textarea.value }),
                });
                answer = await response.json();
            } catch (error) {
                answer = { count: null, sample: [], error: "The count could not be updated. Please try again." };
            }
            if (mine === asked) {
                showPreview(answer);
            }
        }

        function showPreview(answer) {
            const count = preview.querySelector("[data-preview-count]");
            const error = preview.querySelector("[data-preview-error]");
            const sample = preview.querySelector("[data-preview-sample]");
            const items = preview.querySelector("[data-preview-list]");
            preview.querySelector("[data-preview-busy]").hidden = true;
            error.textContent = answer.error || "";
            error.hidden = !answer.error;
            count.hidden = Boolean(answer.error);
            count.textContent = answer.error ? "" : countText(answer.count);
            items.replaceChildren(
                ...(answer.sample || []).map((member) => {
                    const item = element("li");
                    const link = element("a", { href: member.url, class: "font-medium text-primary-600 dark:text-primary-500" }, member.name);
                    item.append(link, " ", element("span", { class: "text-base-500 dark:text-base-400" }, member.email));
                    return item;
                })
            );
            sample.hidden = Boolean(answer.error) || !(answer.sample || []).length;
        }

        modes.hidden = false;
        toRows();
    }

    document.addEventListener("DOMContentLoaded", () => {
        document.querySelectorAll("[data-segment-rules]").forEach(setUp);
    });
})();
