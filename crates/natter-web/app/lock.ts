// One tab at a time: the store's pages live in this tab's memory and are written to IndexedDB
// behind SQLite's back, so two tabs would overwrite each other. A Web Lock held for the page's
// lifetime says which tab has Natter open.

const LOCK = 'natter-store';

/** Takes the lock if no other tab holds it, and keeps it until the page closes. */
export function holdStoreLock(): Promise<boolean> {
  return new Promise((resolve, reject) => {
    navigator.locks
      .request(LOCK, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        // Held until the page goes away.
        return lock ? new Promise<void>(() => {}) : undefined;
      })
      .catch(reject);
  });
}
