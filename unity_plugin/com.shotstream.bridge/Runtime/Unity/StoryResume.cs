// Resume Story On Reconnect: what ShotStreamClient remembers of its story so that a session opened elsewhere (another server behind
// the proxy) continues it from the snapshot of its last shot boundary. The design of the Python SDK's ResumingSession
// (service/sdk/resume.py), on the client's main thread.
using System;
using System.Collections.Generic;
using ShotStream.Core;
using UnityEngine.Events;

namespace ShotStream.Unity
{
    /// <summary>What <see cref="ShotStreamClient.storyResumed"/> says: the story moved to a new session (probably on another server)
    /// after its own ended because the server went away.</summary>
    public sealed class StoryResumed
    {
        /// <summary>The new session's id.</summary>
        public string SessionId = "";
        /// <summary>Why the old session ended: "server draining", "server shutdown", "connection lost: ...", ...</summary>
        public string Reason = "";
        /// <summary>True: the new session continues the snapshot of the story's last shot boundary (the story goes on, losing at
        /// most the shot that was in progress, which plays again from its start). False: there was no snapshot yet, so this is a
        /// new story with the same caption and seed (the shot in progress and the queued cues are cued again).</summary>
        public bool FromSnapshot;
        /// <summary>The shot index the story continues with: the first re-sent cue becomes this shot (0 for a new story).</summary>
        public int NextShotIndex;
        /// <summary>The event ids cued again, in order (the replayed shots first).</summary>
        public string[] Recued = new string[0];
    }

    [Serializable] public sealed class StoryResumedEvent : UnityEvent<StoryResumed> { }

    /// <summary>The cues of a story and its latest snapshot (main thread only). A cue is remembered until a snapshot after its shot
    /// is kept; a cut forgets the cues it dropped.</summary>
    internal sealed class StoryRecord
    {
        internal sealed class Entry
        {
            public Cue Cue;
            public long Order;          // the client's cue order (PlayShot's cut bookkeeping)
            public int ShotIndex = -1;  // >= 0 once it became a shot
            public int Chunks = -1;     // >= 0 once that shot finished: the chunks it made
            public bool Replay;         // sent again as a replayed shot, not started yet on the new session
        }

        readonly List<Entry> cues = new List<Entry>();
        readonly List<Entry> held = new List<Entry>();  // sent once the last replayed shot has started
        string releaseOn;                               // that shot's event id (null: nothing waits)

        public byte[] Snapshot { get; private set; }
        /// <summary>The shot the snapshot continues with (-1: not known yet, e.g. a ContinueFromSnapshot not restored yet).</summary>
        public int SnapshotNext { get; private set; } = -1;
        public int Count { get { return cues.Count; } }

        /// <summary>A new Connect: the story starts from <paramref name="start"/> (null: a new story). Cues still waiting to be sent
        /// (<paramref name="keep"/>, by event id) stay.</summary>
        public void Reset(byte[] start, ICollection<string> keep)
        {
            cues.RemoveAll(e => keep == null || !keep.Contains(e.Cue.EventId) || e.ShotIndex >= 0);
            foreach (var e in cues) e.Replay = false;
            held.Clear();
            releaseOn = null;
            Snapshot = start;
            SnapshotNext = -1;
        }

        /// <summary>A cue the game gave. Returns false when it must wait (held) until the replayed shot has started.</summary>
        public bool Cued(Cue cue, long order)
        {
            if (cue.Mode == CueMode.Cut)
            {
                // the server drops its queued cues on a cut (a cue held here would be dropped the same way once sent)
                cues.RemoveAll(e => e.ShotIndex < 0 && !e.Replay);
                held.Clear();
            }
            var entry = new Entry { Cue = Copy(cue), Order = order };
            cues.Add(entry);
            if (releaseOn != null && (held.Count > 0 || cue.Mode == CueMode.Cut))
            {
                held.Add(entry);
                return false;
            }
            return true;
        }

        /// <summary>ShotStarted: returns the held cues to send now (empty: none).</summary>
        public List<Entry> Started(string eventId, uint shotIndex)
        {
            foreach (var e in cues)
                if (e.ShotIndex < 0 && e.Cue.EventId == eventId)
                {
                    e.ShotIndex = (int)shotIndex;
                    e.Replay = false;
                    break;
                }
            var release = new List<Entry>();
            if (releaseOn != null && eventId == releaseOn)
            {
                releaseOn = null;
                release.AddRange(held);
                held.Clear();
            }
            return release;
        }

        public void Finished(string eventId, uint shotIndex, uint chunks)
        {
            foreach (var e in cues)
                if (e.ShotIndex == (int)shotIndex && e.Cue.EventId == eventId) e.Chunks = (int)chunks;
        }

        /// <summary>A snapshot of the story's boundary before shot <paramref name="next"/>: kept; the shots before it are forgotten.</summary>
        public void Kept(byte[] data, int next)
        {
            Snapshot = data;
            SnapshotNext = next;
            cues.RemoveAll(e => e.ShotIndex >= 0 && e.ShotIndex < next);
        }

        /// <summary>The session continuing <see cref="Snapshot"/> has its story: the next cue becomes shot <paramref name="next"/>.</summary>
        public void Restored(int next)
        {
            if (Snapshot != null && SnapshotNext < 0) SnapshotNext = next;
        }

        /// <summary>A new session opened after the old one's server went away, from the kept snapshot (<paramref name="fromSnapshot"/>)
        /// or as a new story. Returns the cues to send now, in order; the rest are held until the last replayed shot starts. A shot
        /// that had started plays again from its start (WAIT); one that had finished, as a shot of the chunks it made (a cut after k
        /// chunks makes exactly a k-chunk shot's frames); queued cues go as they were.</summary>
        public List<Entry> Resume(bool fromSnapshot, out List<Entry> recued)
        {
            recued = new List<Entry>();
            foreach (var e in cues)
            {
                if (e.ShotIndex < 0) recued.Add(e);
                else if (fromSnapshot && e.ShotIndex >= SnapshotNext) recued.Add(e);
                else if (!fromSnapshot && e.Chunks < 0) recued.Add(e);  // a new story from the shot in progress
            }
            cues.Clear();
            cues.AddRange(recued);
            held.Clear();
            releaseOn = null;
            foreach (var e in recued)
            {
                if (e.ShotIndex >= 0)
                {
                    if (e.Chunks >= 0) e.Cue.NumChunks = (uint)e.Chunks;
                    e.Cue.Mode = CueMode.Wait;
                    e.Cue.AtChunk = 0;
                    e.Replay = true;
                }
                e.ShotIndex = e.Chunks = -1;
                if (e.Replay) releaseOn = e.Cue.EventId;
            }
            var now = new List<Entry>();
            foreach (var e in recued)
            {
                // a cut would drop the replayed shot before it starts on the new server: it and what follows wait for that shot
                if (releaseOn != null && !e.Replay && (held.Count > 0 || e.Cue.Mode == CueMode.Cut)) held.Add(e);
                else now.Add(e);
            }
            return now;
        }

        public static Cue Copy(Cue c)
        {
            var copy = new Cue { EventId = c.EventId, Prompt = c.Prompt, NumChunks = c.NumChunks, Mode = c.Mode, AtChunk = c.AtChunk };
            copy.Tags.AddRange(c.Tags);
            return copy;
        }
    }
}
