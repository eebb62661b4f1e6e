// The burst form's live audience count: whenever an audience field changes, ask the
// server how many members it would mail now. The audience inputs are read from the
// form every second (the member and list pickers are select2 widgets, whose changes
// do not all reach native listeners); the server is asked only when they differ.
(function () {
  "use strict";
  var FIELDS = ["all_members", "recipients", "lists", "segments", "exclude_lists", "exclude_segments"];

  function query(form) {
    var params = new URLSearchParams();
    FIELDS.forEach(function (name) {
      form.querySelectorAll('[name="' + name + '"]').forEach(function (input) {
        if (input.type === "checkbox") {
          if (input.checked) params.append(name, "on");
        } else if (input.tagName === "SELECT") {
          Array.prototype.forEach.call(input.selectedOptions, function (option) {
            if (option.value) params.append(name, option.value);
          });
        } else if (input.value) {
          params.append(name, input.value);
        }
      });
    });
    return params.toString();
  }

  function start() {
    var target = document.getElementById("audience-count");
    if (!target) return;
    var form = target.closest("form");
    if (!form) return;
    var url = target.getAttribute("data-url");
    var last = null;
    function refresh() {
      var current = query(form);
      if (current === last) return;
      last = current;
      fetch(url + "?" + current, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (data && current === last) {
            target.textContent = data.text;
            target.setAttribute("data-count", String(data.count));
          }
        })
        .catch(function () {});
    }
    refresh();
    window.setInterval(refresh, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
