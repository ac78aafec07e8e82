// Dataset sub-tab, browser side: clicking a tag in the All tags pane filters by it, and the
// caption editor completes tags from the dataset's own vocabulary. Namespaced like tagger.js
// (ids and classes start with "tagger_ds_", the only globals are window.tagger_ds_*).
(function () {
  "use strict";
  if (window.tagger_ds_loaded) {
    return;
  }
  window.tagger_ds_loaded = true;

  function dsRoot() {
    return typeof gradioApp === "function" ? gradioApp() : document;
  }

  function dsSetValue(box, value) {
    box.value = value;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function dsBox(id) {
    return dsRoot().querySelector("#" + id + " textarea, #" + id + " input");
  }

  // A tag clicked in the All tags pane becomes the filter, which is applied at once.
  window.tagger_ds_filter_by = function (tag) {
    var box = dsBox("tagger_ds_filter");
    var button = dsRoot().querySelector("#tagger_ds_apply_filter");
    if (!box || !button || !tag) {
      return false;
    }
    dsSetValue(box, 'tag:"' + tag.replace(/"/g, "") + '"');
    setTimeout(function () {
      button.click();
    }, 50);
    return true;
  };

  document.addEventListener("click", function (event) {
    var path = event.composedPath ? event.composedPath() : [event.target];
    for (var i = 0; i < path.length; i++) {
      var el = path[i];
      if (el && el.classList && el.classList.contains("tagger_ds_tag")) {
        event.preventDefault();
        window.tagger_ds_filter_by(el.getAttribute("data-tag"));
        return;
      }
    }
  });

  // While the Dataset sub-tab is open it takes the whole width: the tagging results and options
  // beside and below it do not apply to it.
  function dsWide() {
    var tab = dsRoot().querySelector("#tagger_tab");
    var panel = dsRoot().querySelector("#tagger_dataset_tab");
    if (tab && panel) {
      tab.classList.toggle("tagger_ds_wide", panel.offsetParent !== null);
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.closest && target.closest("#tagger_modes")) {
      setTimeout(dsWide, 50);
    }
  });

  // -- autocomplete of the caption editor ---------------------------------------------------
  var dsState = { items: [], active: -1, box: null };

  function dsVocabulary() {
    var holder = dsRoot().querySelector("#tagger_ds_vocab");
    if (!holder) {
      return [];
    }
    try {
      return JSON.parse(holder.getAttribute("data-tags") || "[]");
    } catch (err) {
      return [];
    }
  }

  function dsNorm(text) {
    return text.toLowerCase().replace(/_/g, " ").trim();
  }

  // The tag being typed: from the last comma before the caret to the caret.
  function dsFragment(box) {
    var caret = box.selectionStart || 0;
    var before = box.value.slice(0, caret);
    var start = before.lastIndexOf(",") + 1;
    return { start: start, end: caret, text: before.slice(start).trim() };
  }

  function dsList() {
    var list = document.getElementById("tagger_ds_suggest");
    if (!list) {
      list = document.createElement("ul");
      list.id = "tagger_ds_suggest";
      list.className = "tagger_ds_suggest";
      document.body.appendChild(list);
    }
    return list;
  }

  function dsHide() {
    var list = document.getElementById("tagger_ds_suggest");
    if (list) {
      list.style.display = "none";
    }
    dsState.items = [];
    dsState.active = -1;
  }

  function dsAccept(tag) {
    var box = dsState.box;
    if (!box) {
      return;
    }
    var part = dsFragment(box);
    var head = box.value.slice(0, part.start);
    var tail = box.value.slice(part.end).replace(/^[^,]*/, "");
    var lead = head.length && !/\s$/.test(head) ? " " : "";
    var text = head + lead + tag + (tail.length ? "" : ", ") + tail;
    dsSetValue(box, text);
    var caret = (head + lead + tag).length + (tail.length ? 0 : 2);
    box.setSelectionRange(caret, caret);
    dsHide();
  }

  function dsShow(box) {
    var part = dsFragment(box);
    var want = dsNorm(part.text);
    if (!want) {
      dsHide();
      return;
    }
    var present = {};
    box.value.split(",").forEach(function (t) {
      present[dsNorm(t)] = true;
    });
    var starts = [];
    var contains = [];
    dsVocabulary().forEach(function (tag) {
      var norm = dsNorm(tag);
      if (norm === want || present[norm]) {
        return;
      }
      if (norm.indexOf(want) === 0) {
        starts.push(tag);
      } else if (norm.indexOf(want) > 0) {
        contains.push(tag);
      }
    });
    var items = starts.concat(contains).slice(0, 8);
    if (!items.length) {
      dsHide();
      return;
    }
    var list = dsList();
    list.replaceChildren();
    items.forEach(function (tag, i) {
      var item = document.createElement("li");
      item.textContent = tag;
      item.className = "tagger_ds_suggestion" + (i === 0 ? " tagger_ds_active" : "");
      item.addEventListener("mousedown", function (event) {
        event.preventDefault();
        dsAccept(tag);
      });
      list.appendChild(item);
    });
    var rect = box.getBoundingClientRect();
    list.style.left = rect.left + window.scrollX + "px";
    list.style.top = rect.bottom + window.scrollY + "px";
    list.style.minWidth = Math.min(rect.width, 320) + "px";
    list.style.display = "block";
    dsState.items = items;
    dsState.active = 0;
    dsState.box = box;
  }

  function dsInCaption(target) {
    return target && target.closest && target.closest("#tagger_ds_caption") && target.tagName === "TEXTAREA";
  }

  document.addEventListener("input", function (event) {
    var target = event.composedPath ? event.composedPath()[0] : event.target;
    if (dsInCaption(target) && event.isTrusted) {
      dsShow(target);
    }
  }, true);

  document.addEventListener("keydown", function (event) {
    var target = event.composedPath ? event.composedPath()[0] : event.target;
    if (!dsInCaption(target) || !dsState.items.length) {
      return;
    }
    var list = dsList();
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      var step = event.key === "ArrowDown" ? 1 : -1;
      dsState.active = (dsState.active + step + dsState.items.length) % dsState.items.length;
      Array.prototype.forEach.call(list.children, function (item, i) {
        item.classList.toggle("tagger_ds_active", i === dsState.active);
      });
    } else if (event.key === "Tab" || event.key === "Enter") {
      event.preventDefault();
      dsAccept(dsState.items[dsState.active]);
    } else if (event.key === "Escape") {
      dsHide();
    }
  }, true);

  document.addEventListener("focusout", function (event) {
    var target = event.composedPath ? event.composedPath()[0] : event.target;
    if (dsInCaption(target)) {
      setTimeout(dsHide, 150);
    }
  }, true);
})();
