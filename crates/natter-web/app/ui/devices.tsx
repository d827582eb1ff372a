// Devices and verification: this user's devices (approve a new one, remove one), and each
// contact's safety number to compare, with their trust level.
import { useEffect, useState } from 'preact/hooks';
import type { Natter } from '../../pkg/natter_web.js';
import type { Live } from '../live';
import { type Connections, type DeviceStatus, type Notice, reason } from '../views';
import { ApprovalFlow } from './approve';

/** A safety number in groups of five digits. */
function grouped(number: string): string {
  return (number.replace(/\D/g, '').match(/.{1,5}/g) ?? []).join(' ');
}

/** One contact's safety number and trust. */
function Verify({ natter, user, name }: { natter: Natter; user: string; name: string }) {
  const [number, setNumber] = useState<string | null>(null);
  const [level, setLevel] = useState<string>('unknown');
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    natter.safetyNumber(user).then(setNumber, (failure: unknown) => setError(reason(failure)));
    natter.trustLevel(user).then(setLevel);
  }, [natter, user]);
  async function confirm() {
    try {
      setNumber(await natter.confirmVerified(user));
      setLevel(await natter.trustLevel(user));
    } catch (failure) {
      setError(reason(failure));
    }
  }
  return (
    <li data-verify={name}>
      <h3>{name}</h3>
      <p>
        Trust: <strong data-trust={level}>{level}</strong>
      </p>
      {number && (
        <p>
          Safety number: <code class="key" data-safety-number={grouped(number)}>{grouped(number)}</code>
        </p>
      )}
      {level !== 'verified' && number && (
        <button type="button" onClick={confirm}>
          Mark {name} verified
        </button>
      )}
      {error && <p role="alert">{error}</p>}
    </li>
  );
}

/** The devices section. */
export function Devices({ natter, live }: { natter: Natter; live: Live }) {
  const [mine, setMine] = useState<DeviceStatus[]>([]);
  const [connections, setConnections] = useState<Connections | null>(null);
  const [notices, setNotices] = useState<Notice[]>([]);
  const [error, setError] = useState<string | null>(null);
  const reload = () => {
    natter.devices(natter.userId).then(setMine, (failure: unknown) => setError(reason(failure)));
    natter.notices().then(setNotices);
  };
  useEffect(() => {
    reload();
    natter.connections().then(setConnections, () => {});
    return live.subscribe((event) => {
      if (event.type === 'notice' || (event.type === 'approval' && event.step === 'done')) reload();
    });
  }, [natter, live]);

  const [removing, setRemoving] = useState<DeviceStatus | null>(null);
  /** Removes a device; an approved one needs the recovery key (its keys are rotated). */
  async function remove(device: DeviceStatus, recoveryKey?: string) {
    setError(null);
    try {
      await natter.removeDevice(device.device_id, recoveryKey);
      setRemoving(null);
      reload();
    } catch (failure) {
      setError(reason(failure));
    }
  }

  return (
    <div class="devices-screen">
      <section aria-labelledby="mine-title" class="card">
        <h2 id="mine-title">Your devices</h2>
        <ul class="people">
          {mine.map((device) => (
            <li key={device.device_id} data-device={device.name}>
              <span>
                {device.name}
                {device.device_id === natter.deviceId && ' (this browser)'}{' '}
                <span class="meta">{device.signed ? 'approved' : 'not approved'}</span>
              </span>
              <span class="actions">
                {!device.signed && device.device_id !== natter.deviceId && (
                  <button type="button" onClick={() => natter.approveDevice(device.device_id).catch((f: unknown) => setError(reason(f)))}>
                    Approve {device.name}
                  </button>
                )}
                {device.device_id !== natter.deviceId && (
                  <button type="button" onClick={() => (device.signed ? setRemoving(device) : remove(device))}>
                    Remove {device.name}
                  </button>
                )}
              </span>
            </li>
          ))}
        </ul>
        {removing && (
          <form
            class="inline"
            onSubmit={(event) => {
              event.preventDefault();
              const key = String(new FormData(event.currentTarget as HTMLFormElement).get('recovery')).trim();
              remove(removing, key);
            }}
          >
            <label>
              Your recovery key, to remove {removing.name}
              <input name="recovery" required autoComplete="off" spellcheck={false} />
            </label>
            <button type="submit">Remove it</button>
            <button type="button" onClick={() => setRemoving(null)}>
              Cancel
            </button>
          </form>
        )}
        <ApprovalFlow natter={natter} live={live} />
        {error && <p role="alert">{error}</p>}
      </section>
      <section aria-labelledby="verify-title" class="card">
        <h2 id="verify-title">Verify your contacts</h2>
        <p>Compare the safety number with your contact, in person or on a call. If it matches, mark them verified.</p>
        <ul class="verify">
          {connections?.connections.map((entry) => (
            <Verify key={entry.user_id} natter={natter} user={entry.user_id} name={entry.profile.display_name || entry.profile.username} />
          ))}
        </ul>
      </section>
      {notices.length > 0 && (
        <section aria-labelledby="notices-title" class="card">
          <h2 id="notices-title">Notices</h2>
          <ul>
            {notices.map((notice, i) => (
              <li key={i}>{notice.text}</li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}
