// Tagger tab, browser side. Everything is namespaced: element ids and classes start with
// "tagger_", the only globals are window.tagger_*. Works in the webui (this file is injected as
// a script) and in the standalone app (its text is run once on page load).
(function () {
  "use strict";
  if (window.tagger_loaded) {
    return;
  }
  window.tagger_loaded = true;

  function taggerRoot() {
    return typeof gradioApp === "function" ? gradioApp() : document;
  }

  // Split a comma-separated list, trimming blanks.
  function taggerSplit(text) {
    return (text || "")
      .split(",")
      .map(function (part) {
        return part.trim();
      })
      .filter(function (part) {
        return part.length > 0;
      });
  }

  // Gradio listens to "input" events on the textarea to update its value.
  function taggerSetValue(textarea, value) {
    textarea.value = value;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }

  // Add a tag to the exclude list (once, compared as the core compares tags).
  window.tagger_add_exclude = function (tag) {
    var box = taggerRoot().querySelector("#tagger_opt_exclude_tags textarea");
    if (!box || !tag) {
      return false;
    }
    var norm = function (t) {
      return t.toLowerCase().replace(/_/g, " ").trim();
    };
    var tags = taggerSplit(box.value);
    if (tags.some(function (t) { return norm(t) === norm(tag); })) {
      return false;
    }
    tags.push(tag);
    taggerSetValue(box, tags.join(", "));
    return true;
  };

  // Clicking a tag in the character or general results adds it to the exclude list.
  document.addEventListener("click", function (event) {
    var path = event.composedPath ? event.composedPath() : [event.target];
    var set = null;
    var inResults = false;
    for (var i = 0; i < path.length; i++) {
      var el = path[i];
      if (!el || !el.classList) {
        continue;
      }
      if (!set && el.classList.contains("confidence-set")) {
        set = el;
      }
      if (el.id === "tagger_character" || el.id === "tagger_general") {
        inResults = true;
        break;
      }
    }
    if (!set || !inResults) {
      return;
    }
    var testid = set.getAttribute("data-testid") || "";
    var suffix = "-confidence-set";
    var tag = testid.endsWith(suffix) ? testid.slice(0, -suffix.length) : "";
    if (!tag) {
      var text = set.querySelector(".text, dd");
      tag = text ? text.textContent.trim() : "";
    }
    if (window.tagger_add_exclude(tag)) {
      // A short flash: the row element is reused for other tags when the results change.
      set.classList.add("tagger_excluded");
      setTimeout(function () {
        set.classList.remove("tagger_excluded");
      }, 800);
    }
  });

  // Start button: give the run a task id so the webui shows its progress bar (the webui's
  // randomId/requestProgress); in the standalone app the id stays empty.
  window.tagger_start_batch = function () {
    var args = Array.prototype.slice.call(arguments);
    if (typeof randomId === "function" && typeof requestProgress === "function") {
      var id = randomId();
      args[0] = id;
      var container = taggerRoot().querySelector("#tagger_batch_progress");
      if (container) {
        requestProgress(id, container, null, function () {});
      }
    } else {
      args[0] = "";
    }
    return args;
  };
})();
