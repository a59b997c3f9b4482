// Times arrive as UTC text (readable without this script); show them in the viewer's zone,
// keeping UTC in the title (hover). The only script of the console: no inline code, no CDN.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at.getTime())) {
      el.textContent = at.toLocaleString(undefined, {dateStyle: "medium", timeStyle: "medium"});
    }
  });
});
