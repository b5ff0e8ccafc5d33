// "Cetak" buttons on printouts: hidden until this script runs (without JavaScript the page
// says to use the browser's print menu), then they open the print dialog.
for (const button of document.querySelectorAll("[data-cetak]")) {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
}
