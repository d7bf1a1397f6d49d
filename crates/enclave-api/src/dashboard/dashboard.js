// The dashboard's only script, served by the server itself: "Copy" buttons copy the value of
// the input their data-copy names.
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]');
  if (!button) return;
  const input = document.getElementById(button.dataset.copy);
  if (!input) return;
  input.select();
  navigator.clipboard.writeText(input.value).then(
    () => { button.textContent = 'Copied'; },
    () => { button.textContent = 'Selected: press Ctrl+C'; },
  );
});
