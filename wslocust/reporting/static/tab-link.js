/*
 * Added to Locust's web UI page by wslocust: on the WebSocket tabs, a link to the WebSocket
 * dashboard (its charts) above the tab's table. Locust's tabs hold tables only.
 */
(function () {
  "use strict";
  var ID = "wslocust-dashboard-link";

  function update() {
    var tab = new URLSearchParams(window.location.search).get("tab") || "";
    var link = document.getElementById(ID);
    var table = document.querySelector("#root table");
    if (tab.indexOf("websocket") !== 0 || !table) {
      if (link) link.remove();
      return;
    }
    var container = table.closest(".MuiTableContainer-root") || table.parentElement;
    if (link && link.nextElementSibling === container) return;
    if (!link) {
      link = document.createElement("a");
      link.id = ID;
      link.href = "./ws/dashboard";
      link.textContent = "WebSocket dashboard: these figures as charts over time →";
      link.style.cssText = "display:inline-block;margin:4px 0 10px;font-size:15px;font-weight:600;color:#2a6bd1;";
    }
    container.parentElement.insertBefore(link, container);
  }

  new MutationObserver(update).observe(document.body, { childList: true, subtree: true });
  window.addEventListener("popstate", update);
  update();
})();
