// Copy buttons: <button data-copy="text">. The page works without this script; it only adds
// the convenience of copying with one tap.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  event.preventDefault();
  const said = button.textContent;
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy";
  }
  setTimeout(() => { button.textContent = said; }, 2000);
});
// Without this script the buttons would do nothing: they are hidden until it runs.
for (const button of document.querySelectorAll("button[data-copy]")) button.hidden = false;

// Creator portal: a video file larger than the brief page takes is refused as soon as it is
// chosen, with the server's own words, instead of after a long upload (the server refuses it
// too). <input type=file data-max-bytes="..." data-too-large="...">
for (const input of document.querySelectorAll("input[type=file][data-max-bytes]")) {
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    const tooLarge = file && file.size > Number(input.dataset.maxBytes);
    input.setCustomValidity(tooLarge ? input.dataset.tooLarge : "");
    if (tooLarge) input.reportValidity();
  });
}
