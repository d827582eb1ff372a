// Approving a device: a new device enters the recovery key, or compares a code with one of
// the user's approved devices (both sides show `ApprovalFlow`).
import { useEffect, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import type { Live } from '../live';
import { type Approval, reason } from '../views';

/** The code of an approval in progress, with the button that confirms it; follows its events. */
export function ApprovalFlow({ natter, live }: { natter: Natter; live: Live }) {
  const [step, setStep] = useState<Approval | null>(null);
  const [confirmed, setConfirmed] = useState(false);
  useEffect(
    () =>
      live.subscribe((event) => {
        if (event.type !== 'approval') return;
        setStep(event);
        if (event.step === 'code') setConfirmed(false);
      }),
    [live],
  );
  if (!step || step.step === 'requested') return null;
  if (step.step === 'done') return <p role="status">Device {step.device_id} is approved.</p>;
  if (step.step === 'cancelled') return <p role="alert">The approval ended: {step.reason}</p>;
  return (
    <div class="card" role="group" aria-labelledby="approval-code">
      <p id="approval-code">
        Check that both devices show this code: <strong class="key">{step.code}</strong>
      </p>
      <button
        type="button"
        disabled={confirmed}
        onClick={() => {
          setConfirmed(true);
          natter.confirmApproval(step.flow_id);
        }}
      >
        {confirmed ? 'Waiting for the other device…' : 'They match'}
      </button>
    </div>
  );
}

/** A device that is not approved yet: the recovery key, or approval from another device. */
export function Approve({ natter, live, onApproved }: { natter: Natter; live: Live; onApproved: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function submit(event: Event) {
    event.preventDefault();
    const key = String(new FormData(event.currentTarget as HTMLFormElement).get('recovery'));
    setBusy(true);
    setError(null);
    try {
      await natter.recover(key.trim());
      onApproved();
    } catch (failure) {
      setError(reason(failure));
    } finally {
      setBusy(false);
    }
  }
  return (
    <section aria-labelledby="approve-title" class="card">
      <h2 id="approve-title">Approve this device</h2>
      <p>
        Your account has other devices. Before this one can read and send, approve it: enter your recovery key, or
        open Natter on a device you already use and approve this one from its Devices screen.
      </p>
      <form onSubmit={submit}>
        <label>
          Recovery key
          <input name="recovery" required autoComplete="off" spellcheck={false} />
        </label>
        <button type="submit" disabled={busy}>
          Approve with the recovery key
        </button>
      </form>
      {error && <p role="alert">{error}</p>}
      <ApprovalFlow natter={natter} live={live} />
    </section>
  );
}
