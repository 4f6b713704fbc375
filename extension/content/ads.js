/**
 * YouTube's ad state: while an ad plays, #movie_player carries the class `ad-showing`.
 * Only detection lives here; what the room does about it is the worker's reports.js and the
 * room's ad-sync policy.
 */

// YouTube sometimes replaces #movie_player (in-page navigation, theatre mode): look again
// this often, besides watching the current element's class attribute.
const RESCAN_MS = 1000;

/**
 * @param {(showing: boolean) => void} onChange
 * @returns {{readonly showing: boolean}}
 */
export function watchAds(onChange) {
  let showing = false;
  let player = null;
  const observer = new MutationObserver(() => check());
  function check() {
    const current = document.getElementById('movie_player');
    if (current !== player) {
      observer.disconnect();
      player = current;
      if (player) observer.observe(player, { attributes: true, attributeFilter: ['class'] });
    }
    const now = Boolean(player?.classList.contains('ad-showing'));
    if (now !== showing) {
      showing = now;
      onChange(now);
    }
  }
  check();
  setInterval(check, RESCAN_MS);
  return {
    get showing() {
      return showing;
    },
  };
}
