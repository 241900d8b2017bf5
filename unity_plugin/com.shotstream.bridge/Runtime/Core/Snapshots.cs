// Story snapshots and cue logs on the client side, no UnityEngine: a snapshot split into the parts a client sends
// (OpenSession.snapshot + snapshot_part messages), one assembled from the parts the server sends, bounded, and a cue
// log merged from its pages.
using System;
using System.Collections.Generic;
using System.IO;

namespace ShotStream.Core
{
    /// <summary>A snapshot's bytes as the parts a client sends: the first goes in OpenSession.Snapshot (with TotalBytes), the
    /// rest as snapshot_part messages, in order. A client message may be at most 64 KiB (the server's max_control_message_bytes)
    /// and the gateway carries bytes as base64 JSON (4/3 the size), so a part holds at most 32 KiB.</summary>
    public static class SnapshotParts
    {
        public const int MaxUploadPartBytes = 32 * 1024;

        /// <summary>The parts of <paramref name="data"/>, each of at most <paramref name="partBytes"/> (1..32 KiB), with TotalBytes and
        /// Index set (Count left 0, as clients may). Lazy: a part's bytes are copied when it is enumerated.</summary>
        public static IEnumerable<SnapshotPart> Split(byte[] data, int partBytes = MaxUploadPartBytes)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            if (data.Length == 0) throw new ArgumentException("an empty snapshot: keep the bytes snapshotReady delivered, unchanged", nameof(data));
            if (partBytes < 1 || partBytes > MaxUploadPartBytes)
                throw new ArgumentOutOfRangeException(nameof(partBytes), partBytes, "a part holds 1.." + MaxUploadPartBytes + " bytes (the server's 64 KiB message limit, base64)");
            return SplitLazily(data, partBytes);
        }

        static IEnumerable<SnapshotPart> SplitLazily(byte[] data, int partBytes)
        {
            uint index = 0;
            for (int offset = 0; offset < data.Length; offset += partBytes, index++)
            {
                int n = Math.Min(partBytes, data.Length - offset);
                var chunk = new byte[n];
                Buffer.BlockCopy(data, offset, chunk, 0, n);
                yield return new SnapshotPart { Data = chunk, TotalBytes = (ulong)data.Length, Index = index };
            }
        }

        /// <summary>The first part only (what OpenSession.Snapshot carries).</summary>
        public static SnapshotPart First(byte[] data, int partBytes = MaxUploadPartBytes)
        {
            foreach (var part in Split(data, partBytes)) return part;
            throw new InvalidOperationException("unreachable: a non-empty snapshot has a first part");
        }
    }

    /// <summary>Puts together the snapshot parts a server sends (ServerMessage.Snapshot), checking them as they come: parts in
    /// order from index 0, one total size, never more than announced, and never more than <see cref="MaxBytes"/> (the memory
    /// for the whole snapshot is taken when its first part arrives, so a peer cannot make the client grow a buffer without
    /// bound). A part that breaks a rule throws <see cref="InvalidDataException"/> and drops the snapshot in progress.</summary>
    public sealed class SnapshotAssembler
    {
        /// <summary>256 MiB: a full-size story's snapshot is under 40 MiB, and servers send at most 64 MiB by default.</summary>
        public const long DefaultMaxBytes = 256L * 1024 * 1024;

        public readonly long MaxBytes;
        byte[] data;
        long received;
        uint nextIndex, count;

        public SnapshotAssembler(long maxBytes = DefaultMaxBytes)
        {
            if (maxBytes < 1 || maxBytes > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "1 .. 2^31-1 bytes");
            MaxBytes = maxBytes;
        }

        /// <summary>True between a snapshot's first part and its last.</summary>
        public bool InProgress { get { return data != null; } }
        /// <summary>Bytes of the snapshot in progress received so far.</summary>
        public long ReceivedBytes { get { return received; } }

        /// <summary>Adds the next part; returns the whole snapshot once its last byte is in, else null.</summary>
        public byte[] Add(SnapshotPart part)
        {
            if (part == null) throw new ArgumentNullException(nameof(part));
            try { return AddChecked(part); }
            catch (InvalidDataException) { Reset(); throw; }
        }

        byte[] AddChecked(SnapshotPart part)
        {
            if (part.Index == 0)
            {
                if (data != null) throw new InvalidDataException("a new snapshot began (part 0) before the one in progress was complete (" + received + " of " + data.Length + " bytes)");
                if (part.TotalBytes == 0) throw new InvalidDataException("a snapshot part announces a total of 0 bytes");
                if (part.TotalBytes > (ulong)MaxBytes)
                    throw new InvalidDataException("the snapshot is " + part.TotalBytes + " bytes, more than this client takes (" + MaxBytes + " bytes, MaxSnapshotBytes)");
                data = new byte[(long)part.TotalBytes];
                received = 0; nextIndex = 0; count = part.Count;
            }
            else if (data == null) throw new InvalidDataException("snapshot part " + part.Index + " without its part 0");
            if (part.Index != nextIndex) throw new InvalidDataException("snapshot part " + part.Index + " came where part " + nextIndex + " was due");
            if (part.TotalBytes != (ulong)data.Length)
                throw new InvalidDataException("snapshot part " + part.Index + " announces " + part.TotalBytes + " bytes in all; part 0 announced " + data.Length);
            if (part.Count != count) throw new InvalidDataException("snapshot part " + part.Index + " says " + part.Count + " parts; part 0 said " + count);
            if (count != 0 && part.Index >= count) throw new InvalidDataException("snapshot part " + part.Index + " of only " + count);
            int n = part.DataLength;
            if (received + n > data.Length)
                throw new InvalidDataException("snapshot part " + part.Index + " goes past the " + data.Length + " bytes announced");
            if (n > 0) Buffer.BlockCopy(part.Data, 0, data, (int)received, n);
            received += n;
            nextIndex++;
            bool last = count != 0 && part.Index == count - 1;
            if (received == data.Length)
            {
                if (count != 0 && !last) throw new InvalidDataException("the snapshot's " + data.Length + " bytes were in after part " + part.Index + " of " + count);
                var whole = data;
                data = null;
                received = 0;
                return whole;
            }
            if (last) throw new InvalidDataException("the snapshot's last part (" + part.Index + ") left it short: " + received + " of " + data.Length + " bytes");
            return null;
        }

        /// <summary>Drops the snapshot in progress (a session ended, a reconnect).</summary>
        public void Reset() { data = null; received = 0; nextIndex = 0; count = 0; }
    }

    /// <summary>Merges the pages of a cue log (ServerMessage.CueLog) into one: the first page's caption, seed, decoder, first shot
    /// and dropped shots, every page's entries in order, NextShot 0.</summary>
    public sealed class CueLogCollector
    {
        CueLog merged;
        uint lastShot;

        /// <summary>The log so far (the whole log once <see cref="Add"/> returned null).</summary>
        public CueLog Log { get { return merged; } }

        /// <summary>Adds a page; returns the shot to ask for next (CueLogRequest.FromShot), or null when the log is complete.
        /// A page that does not move forward (NextShot at or before its own entries) throws InvalidDataException.</summary>
        public uint? Add(CueLog page)
        {
            if (page == null) throw new ArgumentNullException(nameof(page));
            if (merged == null)
            {
                merged = new CueLog
                {
                    GlobalCaption = page.GlobalCaption, Seed = page.Seed, Decoder = page.Decoder, FirstShotIndex = page.FirstShotIndex,
                    DroppedShots = page.DroppedShots,
                };
            }
            foreach (var e in page.Entries)
            {
                if (merged.Entries.Count > 0 && e.ShotIndex <= lastShot)
                    throw new InvalidDataException("cue log entry for shot " + e.ShotIndex + " after shot " + lastShot + ": pages must move forward");
                merged.Entries.Add(e);
                lastShot = e.ShotIndex;
            }
            if (page.NextShot == 0) return null;
            if (page.Entries.Count == 0 || page.NextShot <= lastShot)
                throw new InvalidDataException("cue log page asks to go on from shot " + page.NextShot + ", which it does not move past");
            return page.NextShot;
        }
    }
}
