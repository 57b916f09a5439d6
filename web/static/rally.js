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

// Review room: a comment's time (<span data-seek="12">0:12</span>) becomes a button that plays
// the video from that moment, and "Use the player's time" fills in the comment's time. Without
// this script the times are plain text and the time field is typed in.
{
  const player = document.getElementById("player");
  if (player) {
    for (const at of document.querySelectorAll("span[data-seek]")) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary small comment-at";
      button.dataset.seek = at.dataset.seek;
      button.textContent = at.textContent;
      button.setAttribute("aria-label", `Play the video from ${at.textContent}`);
      at.replaceWith(button);
    }
    document.addEventListener("click", (event) => {
      const seek = event.target.closest("button[data-seek]");
      if (seek) {
        player.currentTime = Number(seek.dataset.seek);
        player.scrollIntoView({ block: "nearest" });
        player.play().catch(() => {});
        return;
      }
      if (event.target.closest("button[data-player-time]")) {
        const whole = Math.floor(player.currentTime);
        document.getElementById("at").value = `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
      }
    });
    for (const button of document.querySelectorAll("button[data-player-time]")) button.hidden = false;
  }
}

// Creator portal: a video file larger than the brief page takes is refused as soon as it is
// chosen, with the server's own words, instead of after a long upload (the server refuses it
// too). <input type=file data-max-bytes="..." data-too-large="...">. With data-preview="id",
// the chosen file plays in that hidden element's <video> before it is sent; without this
// script the preview stays hidden and the file is sent all the same.
for (const input of document.querySelectorAll("input[type=file][data-max-bytes]")) {
  const preview = document.getElementById(input.dataset.preview || "");
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    const tooLarge = file && file.size > Number(input.dataset.maxBytes);
    input.setCustomValidity(tooLarge ? input.dataset.tooLarge : "");
    if (tooLarge) input.reportValidity();
    if (preview) showPreview(preview, tooLarge ? null : file);
  });
}

// Plays `file` in the preview's <video> (nothing shown for no file), letting go of the file
// shown before; a file the browser cannot play says so.
function showPreview(preview, file) {
  const player = preview.querySelector("video");
  const unplayable = preview.querySelector("[data-unplayable]");
  if (player.src.startsWith("blob:")) URL.revokeObjectURL(player.src);
  player.removeAttribute("src");
  player.load();
  unplayable.hidden = true;
  preview.hidden = !file;
  if (!file) return;
  player.addEventListener("error", () => { unplayable.hidden = false; }, { once: true });
  player.src = URL.createObjectURL(file);
}
