// The preview page: choosing a member in the list renders for them at once.
(function () {
    "use strict";
    const form = document.getElementById("preview-form");
    const select = form && form.querySelector("select[name=member]");
    if (!select) { return; }
    select.addEventListener("change", function () {
        form.elements.email.value = "";
        form.submit();
    });
})();
