// The review screen's keys, for people who review hundreds: j/k move between cards,
// a approves, e edits, r rejects the focused card. Keys typed into a field are text.
(function () {
  "use strict";

  function cards() {
    return Array.from(document.querySelectorAll(".mediaopt-review-card"));
  }

  // The card last focused, by id: a swap replaces the element, and for a moment the
  // focus may be on the page itself; the keys still act on that card.
  var lastId = null;
  document.addEventListener("focusin", function (event) {
    var card = event.target.closest && event.target.closest(".mediaopt-review-card");
    if (card) lastId = card.id;
  });

  function current() {
    var active = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".mediaopt-review-card")
      : null;
    return active || (lastId ? document.getElementById(lastId) : null);
  }

  function move(step) {
    var all = cards();
    if (!all.length) return;
    var index = all.indexOf(current());
    var next = index < 0 ? 0 : Math.min(Math.max(index + step, 0), all.length - 1);
    all[next].focus();
    all[next].scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    return target.closest("input, textarea, select, [contenteditable]") !== null;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      move(event.key === "j" ? 1 : -1);
      return;
    }
    var card = current();
    var button = card && card.querySelector('[data-key="' + event.key + '"]');
    if (button) {
      event.preventDefault();
      button.click();
    }
  });

  // A swapped card keeps the focus, so the next key acts on it; an edit form starts in
  // its first field. After settling, not swapping: only then has htmx wired the new
  // card's buttons, and a key pressed earlier would submit the plain form.
  // The swapped card's id, remembered before the swap: the element that asked (a button
  // inside the old card) is gone once the new card is in.
  var swapped = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    swapped = target && target.classList && target.classList.contains("mediaopt-review-card")
      ? target.id
      : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var card = swapped ? document.getElementById(swapped) : null;
    swapped = null;
    // A focus that a swap took away comes back to the card that had it, unless the person
    // has already moved on to another card (a key pressed before the swap settled).
    var active = document.activeElement;
    var elsewhere = active && active.closest ? active.closest(".mediaopt-review-card") : null;
    if (elsewhere && elsewhere !== card) return;
    if (!card || !card.classList.contains("mediaopt-review-card")) return;
    var field = card.querySelector("textarea");
    (field || card).focus();
    // Most edits add to the model's wording or fix its end: start there.
    if (field) field.setSelectionRange(field.value.length, field.value.length);
  });

  // htmx 2 swaps nothing on an error answer: say so on the card instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var card = event.detail.elt.closest(".mediaopt-review-card");
    var box = card && card.querySelector(".mediaopt-review-error");
    if (!box) return;
    box.textContent =
      event.detail.xhr.status === 403
        ? "You may not change this image's metadata."
        : "That did not work (" + event.detail.xhr.status + "). Reload the page and try again.";
    box.hidden = false;
  });
})();
