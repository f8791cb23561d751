// The console's only script of its own: a confirmation before each action's form is
// sent (forms with data-confirm). Everything else is plain HTML and htmx.
document.addEventListener("submit", function (event) {
  var question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
