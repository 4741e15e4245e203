// The console's only script: served by the binary, nothing fetched from
// elsewhere. It opens the links the mlflow client prints (`/#/experiments/1`,
// `/#/experiments/1/runs/<id>`, `/#/models/<name>/versions/<v>`), switches
// workspaces, and keeps the deployment page current.
(function () {
  "use strict";
  var hash = window.location.hash || "";
  var match;
  if ((match = hash.match(/^#\/experiments\/([^/]+)\/runs\/([^/?]+)/))) {
    window.location.replace(prefix() + "/runs/" + encodeURIComponent(match[2]));
    return;
  }
  if ((match = hash.match(/^#\/models\/([^/]+)\/versions\/([^/?]+)/))) {
    window.location.replace(prefix() + "/models/" + match[1] + "/versions/" + encodeURIComponent(match[2]));
    return;
  }
  if ((match = hash.match(/^#\/models\/([^/?]+)/))) {
    window.location.replace(prefix() + "/models/" + match[1]);
    return;
  }
  if ((match = hash.match(/^#\/experiments\/([^/?]+)/))) {
    window.location.replace(prefix() + "/experiments/" + encodeURIComponent(match[1]));
    return;
  }

  function prefix() {
    var path = window.location.pathname.match(/^\/w\/[^/]+/);
    return path ? path[0] : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var switcher = document.querySelector("form[data-switcher]");
    if (switcher) {
      switcher.addEventListener("submit", function (event) {
        event.preventDefault();
        var name = switcher.querySelector("input").value.trim();
        window.location.href = !name || name === "default" ? "/" : "/w/" + encodeURIComponent(name);
      });
    }
    // Forms that destroy something ask first.
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
    var deployment = document.getElementById("deployment");
    if (deployment) {
      refresh(deployment);
      window.setInterval(function () { refresh(deployment); }, 2000);
    }
  });

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "–" : String(text);
    return td;
  }

  // Planned: the primary hands over once the target holds every record it
  // has, so nothing acknowledged is lost; writes wait a moment meanwhile.
  function failover(target, to, from) {
    var question = "Planned failover from " + from + " to " + to + ": writes pause while " + to +
      " catches up and takes the lease (usually well under a second); nothing acknowledged is lost. Go ahead?";
    if (!window.confirm(question)) {
      return;
    }
    var outcome = document.getElementById("failover-outcome") || document.createElement("div");
    outcome.id = "failover-outcome";
    outcome.textContent = "Failing over to " + to + "…";
    // Beside the refreshed table, so the outcome stays on the page.
    target.parentNode.appendChild(outcome);
    fetch("/api/tandem/v1/failover", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ to: to })
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          outcome.className = "error";
          outcome.textContent = "The failover did not happen: " + (answer.body.message || "unknown error");
          return;
        }
        var report = answer.body;
        outcome.className = "done";
        outcome.textContent = "Done: " + report.to + " is primary (epoch " + report.epoch + "), " +
          (report.zero_loss ? "no write lost" : "writes may be lost") + ", in " + report.duration_ms + " ms.";
      })
      .catch(function (error) {
        outcome.className = "error";
        outcome.textContent = "The failover request failed: " + error;
      });
  }

  function refresh(target) {
    fetch(target.getAttribute("data-source"), { credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        target.textContent = "";
        if (!answer.ok) {
          var message = document.createElement("p");
          message.className = "error";
          message.textContent = answer.body.message || "The deployment's status is not available here.";
          target.appendChild(message);
          return;
        }
        var status = answer.body;
        var summary = document.createElement("p");
        summary.textContent = "Primary: " + (status.primary || "unknown") + " · epoch " + status.epoch +
          " · answered by " + status.region;
        target.appendChild(summary);
        var table = document.createElement("table");
        table.className = "regions";
        var head = document.createElement("tr");
        ["Region", "Role", "Ready", "Applied", "Lag (records)", "Lag (s)"].forEach(function (title) {
          var th = document.createElement("th");
          th.textContent = title;
          head.appendChild(th);
        });
        table.appendChild(head);
        (status.regions || []).forEach(function (region) {
          var row = document.createElement("tr");
          row.appendChild(cell(region.name));
          row.appendChild(cell(region.role));
          row.appendChild(cell(region.ready === false ? "no" : "yes"));
          row.appendChild(cell(region.applied));
          row.appendChild(cell(region.lag_records));
          row.appendChild(cell(region.lag_seconds));
          table.appendChild(row);
        });
        target.appendChild(table);
        // A planned failover, for those the status answered (operators).
        var secondaries = (status.regions || []).filter(function (region) { return region.role !== "primary"; });
        if (secondaries.length && status.witness) {
          var controls = document.createElement("p");
          controls.className = "failover";
          secondaries.forEach(function (region) {
            var button = document.createElement("button");
            button.className = "danger";
            button.textContent = "Fail over to " + region.name;
            button.addEventListener("click", function () { failover(target, region.name, status.primary); });
            controls.appendChild(button);
          });
          target.appendChild(controls);
        }
      })
      .catch(function (error) {
        target.textContent = "";
        var message = document.createElement("p");
        message.className = "error";
        message.textContent = "This region does not answer: " + error;
        target.appendChild(message);
      });
  }
})();
