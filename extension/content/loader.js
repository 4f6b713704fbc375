// Content scripts cannot be ES modules; this classic script imports the real one (listed in
// web_accessible_resources), so the content script shares the one protocol client module.
(async () => {
  const { main } = await import(chrome.runtime.getURL('content/main.js'));
  main();
})().catch((err) => console.error('[ShareTube] content script failed to start', err));
