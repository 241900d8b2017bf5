// Tests for ShotStream.Core.RingReader and ShotStream.Core.JitterBuffer (mono, C# 7.2).
//
//   mcs -langversion:7.2 -unsafe -out:RingJitterTests.exe \
//       unity_plugin/com.shotstream.bridge/Runtime/Core/RingReader.cs \
//       unity_plugin/com.shotstream.bridge/Runtime/Core/JitterBuffer.cs tests/unity/RingJitterTests.cs
//   mono RingJitterTests.exe            -> runs the tests, last line "N passed, M failed", exit 1 on failure
//   mono RingJitterTests.exe --follow PATH SLOT_COUNT SLOT_BYTES HEADER_BYTES SLOT_HEADER_BYTES
//       -> "open" (or "error ..." and exit 2), then one line per stdin request
//          "SLOT SEQUENCE OFFSET LENGTH [pause]": "ok <fnv1a64 hex> <length>", "stale <begin> <end>",
//          "badref" or "mismatch"; or "latest SLOT OFFSET LENGTH": read the slot's last committed
//          chunk (its sequence from seq_end, read here through a view of the file), "ok <hash> <length>
//          <sequence>" (or "stale ...", "none"). With "pause" it prints "copied" after the copy and waits for one
//          more stdin line before the final seq_begin check (so a test can interleave a writer).
using System;
using System.Collections.Generic;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Text;
using ShotStream.Core;

static class RingJitterTests
{
    static int passed, failed;

    static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "--follow") return Follow(args);
        var tests = new List<KeyValuePair<string, Action>>
        {
            T("ring_reads_committed_chunk", RingReadsCommittedChunk),
            T("ring_header_validation", RingHeaderValidation),
            T("ring_never_written_slot_is_stale", RingNeverWrittenIsStale),
            T("ring_lapped_reader_is_stale", RingLappedIsStale),
            T("ring_torn_write_is_stale", RingTornWriteIsStale),
            T("ring_overwritten_while_copying_is_stale", RingOverwrittenWhileCopying),
            T("ring_bad_refs_and_mismatch", RingBadRefs),
            T("ring_read_and_dispose", RingReadAndDispose),
            T("jitter_steady_16fps_from_bursts", JitterSteadyFromBursts),
            T("jitter_startup_by_frames", JitterStartupByFrames),
            T("jitter_underrun_and_recovery", JitterUnderrunAndRecovery),
            T("jitter_capacity_refuse", JitterCapacityRefuse),
            T("jitter_timing_exact_no_drift", JitterTimingExact),
            T("jitter_late_poll_skips", JitterLatePollSkips),
            T("jitter_reset_reuses_buffers", JitterResetReusesBuffers),
            T("jitter_no_per_frame_allocation", JitterNoAllocation),
            T("jitter_allocates_no_frames_up_front", JitterNothingUpFront),
            T("jitter_shared_chunks_by_reference", JitterSharedChunks),
        };
        foreach (var t in tests)
        {
            try
            {
                t.Value();
                passed++;
                Console.WriteLine("PASS " + t.Key);
            }
            catch (Exception e)
            {
                failed++;
                Console.WriteLine("FAIL " + t.Key + ": " + e);
            }
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    static KeyValuePair<string, Action> T(string name, Action a) { return new KeyValuePair<string, Action>(name, a); }

    static void Check(bool cond, string what)
    {
        if (!cond) throw new Exception("check failed: " + what);
    }

    static void Eq<TV>(TV want, TV got, string what)
    {
        if (!EqualityComparer<TV>.Default.Equals(want, got))
            throw new Exception("check failed: " + what + ": want " + want + ", got " + got);
    }

    static void Throws<TE>(Action a, string what) where TE : Exception
    {
        try { a(); }
        catch (TE) { return; }
        catch (Exception e) { throw new Exception("check failed: " + what + ": wrong exception " + e.GetType().Name + ": " + e.Message); }
        throw new Exception("check failed: " + what + ": no exception");
    }

    public static ulong Fnv1a64(byte[] data, long length)
    {
        ulong h = 0xcbf29ce484222325UL;
        for (long i = 0; i < length; i++) { h ^= data[i]; h *= 0x100000001b3UL; }
        return h;
    }

    // ---- follow mode (driven by tests/test_unity_ring.py against a Python FrameRing writer) ----

    static int Follow(string[] args)
    {
        RingReader reader;
        try
        {
            reader = new RingReader(args[1], int.Parse(args[2]), long.Parse(args[3]), int.Parse(args[4]), int.Parse(args[5]));
        }
        catch (Exception e)
        {
            Console.WriteLine("error " + e.GetType().Name + ": " + e.Message.Replace('\n', ' '));
            return 2;
        }
        var stdin = Console.In;
        var stdout = Console.Out;
        bool pause = false;
        reader.AfterCopyForTest = () =>
        {
            if (!pause) return;
            stdout.WriteLine("copied");
            stdout.Flush();
            stdin.ReadLine();
        };
        // The writer's seq_end of a slot says which chunk it last committed (only a hint: TryRead re-checks).
        var file = new FileStream(args[1], FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using (var mmf = MemoryMappedFile.CreateFromFile(file, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, false))
        using (var view = mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read))
        using (reader)
        {
            byte[] buf = new byte[reader.SlotCapacity];
            string line;
            while ((line = stdin.ReadLine()) != null)
            {
                string[] w = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
                if (w.Length == 0) continue;
                if (w[0] == "latest" && w.Length == 4)
                {
                    int ls = int.Parse(w[1]);
                    long llen = long.Parse(w[3]);
                    ulong lseq;
                    RingReadStatus lst;
                    pause = false;
                    ulong end = (ulong)view.ReadInt64(reader.HeaderBytes + ls * reader.SlotBytes + 8);
                    lseq = (end - 2) / 2;
                    if (end < 2 || (end & 1) != 0) stdout.WriteLine("none");
                    else if (reader.TryRead(ls, lseq, long.Parse(w[2]), llen, buf, out lst))
                        stdout.WriteLine("ok " + Fnv1a64(buf, llen).ToString("x16") + " " + llen + " " + lseq);
                    else if (lst == RingReadStatus.Stale) stdout.WriteLine("stale " + reader.LastSeqBegin + " " + reader.LastSeqEnd);
                    else stdout.WriteLine(lst == RingReadStatus.BadRef ? "badref" : "mismatch");
                    stdout.Flush();
                    continue;
                }
                if (w.Length < 4) { stdout.WriteLine("bad request"); stdout.Flush(); continue; }
                pause = w.Length > 4 && w[4] == "pause";
                long length = long.Parse(w[3]);
                RingReadStatus st;
                bool ok = length <= buf.Length
                    ? reader.TryRead(int.Parse(w[0]), ulong.Parse(w[1]), long.Parse(w[2]), length, buf, out st)
                    : Fail(out st);
                if (ok) stdout.WriteLine("ok " + Fnv1a64(buf, length).ToString("x16") + " " + length);
                else if (st == RingReadStatus.Stale) stdout.WriteLine("stale " + reader.LastSeqBegin + " " + reader.LastSeqEnd);
                else stdout.WriteLine(st == RingReadStatus.BadRef ? "badref" : "mismatch");
                stdout.Flush();
            }
        }
        return 0;
    }

    static bool Fail(out RingReadStatus st) { st = RingReadStatus.BadRef; return false; }

    // ---- a tiny C# writer of the same layout (unit tests only; the Python writer is tested from pytest) ----

    sealed class TestRing : IDisposable
    {
        public readonly string Path;
        public readonly int SlotCount;
        public readonly long SlotBytes;
        public const int HeaderBytes = 128, SlotHeaderBytes = 64;
        readonly FileStream fs;

        public TestRing(int slotCount, long payload, string magic = "SSRING01", uint version = 1)
        {
            SlotCount = slotCount;
            SlotBytes = (SlotHeaderBytes + payload + 63) / 64 * 64;
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ssring-test-" + Guid.NewGuid().ToString("N") + ".ring");
            fs = new FileStream(Path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            fs.SetLength(HeaderBytes + slotCount * SlotBytes);
            var h = new byte[HeaderBytes];
            Encoding.ASCII.GetBytes(magic).CopyTo(h, 0);
            BitConverter.GetBytes(version).CopyTo(h, 8);
            BitConverter.GetBytes((uint)HeaderBytes).CopyTo(h, 12);
            BitConverter.GetBytes((uint)slotCount).CopyTo(h, 16);
            BitConverter.GetBytes((uint)SlotHeaderBytes).CopyTo(h, 20);
            BitConverter.GetBytes((ulong)SlotBytes).CopyTo(h, 24);
            At(0, h);
        }

        public long Base(int slot) { return HeaderBytes + slot * SlotBytes; }
        public long Pixels(int slot) { return Base(slot) + SlotHeaderBytes; }

        public void At(long pos, byte[] data)
        {
            fs.Seek(pos, SeekOrigin.Begin);
            fs.Write(data, 0, data.Length);
            fs.Flush();
        }

        public void U64(long pos, ulong v) { At(pos, BitConverter.GetBytes(v)); }

        public void Begin(int slot, ulong seq) { U64(Base(slot), 2 * seq + 1); }

        /// <summary>W1, W2, W3 like FrameRing.write; returns the pixels.</summary>
        public byte[] Write(int slot, ulong seq, int frames, int h, int w, int c, ulong? payloadOverride = null)
        {
            var px = Pattern(seq, frames * h * w * c);
            Begin(slot, seq);
            U64(Base(slot) + 16, seq);
            var meta = new byte[24];
            BitConverter.GetBytes((uint)frames).CopyTo(meta, 0);
            BitConverter.GetBytes((uint)h).CopyTo(meta, 4);
            BitConverter.GetBytes((uint)w).CopyTo(meta, 8);
            BitConverter.GetBytes((uint)c).CopyTo(meta, 12);
            BitConverter.GetBytes(payloadOverride ?? (ulong)px.Length).CopyTo(meta, 16);
            At(Base(slot) + 24, meta);
            At(Pixels(slot), px);
            U64(Base(slot) + 8, 2 * seq + 2);
            return px;
        }

        public RingReader Reader() { return new RingReader(Path, SlotCount, SlotBytes, HeaderBytes, SlotHeaderBytes); }

        public void Dispose()
        {
            fs.Dispose();
            File.Delete(Path);
        }
    }

    static byte[] Pattern(ulong seq, int n)
    {
        var b = new byte[n];
        ulong x = seq * 0x9E3779B97F4A7C15UL + 1;
        for (int i = 0; i < n; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; b[i] = (byte)x; }
        return b;
    }

    static bool Same(byte[] a, byte[] b, int n)
    {
        for (int i = 0; i < n; i++) if (a[i] != b[i]) return false;
        return true;
    }

    // ---- ring tests ----

    static void RingReadsCommittedChunk()
    {
        using (var ring = new TestRing(3, 4 * 8 * 6 * 3))
        using (var r = ring.Reader())
        {
            var px = ring.Write(1, 3, 4, 8, 6, 3);
            var dst = new byte[r.SlotCapacity + 16];
            RingReadStatus st;
            Check(r.TryRead(1, 3, ring.Pixels(1), px.Length, dst, out st), "read ok");
            Eq(RingReadStatus.Ok, st, "status");
            Check(Same(px, dst, px.Length), "bytes match");
            RingSlotInfo info;
            var dst2 = new byte[px.Length + 5];
            Check(r.TryRead(1, 3, ring.Pixels(1), px.Length, dst2, 5, out info, out st), "read with offset");
            for (int i = 0; i < px.Length; i++) Check(dst2[5 + i] == px[i], "offset copy");
            Eq(4u, info.NumFrames, "frames");
            Eq(8u, info.Height, "height");
            Eq(6u, info.Width, "width");
            Eq(3u, info.Channels, "channels");
            Eq((ulong)px.Length, info.PayloadLength, "payload_length");
            Eq(3, r.SlotCount, "slot count");
            Eq(ring.Pixels(2), r.PixelOffset(2), "pixel offset");
            // a zero-length chunk is fine too
            ring.Write(0, 9, 0, 8, 6, 3);
            Check(r.TryRead(0, 9, ring.Pixels(0), 0, dst, out st), "empty chunk");
        }
    }

    static void RingHeaderValidation()
    {
        using (var ring = new TestRing(2, 100))
        {
            Throws<InvalidDataException>(() => new RingReader(ring.Path, 3, ring.SlotBytes, 128, 64).Dispose(), "slot count differs");
            Throws<InvalidDataException>(() => new RingReader(ring.Path, 2, ring.SlotBytes + 64, 128, 64).Dispose(), "slot bytes differ");
            Throws<InvalidDataException>(() => new RingReader(ring.Path, 2, ring.SlotBytes, 192, 64).Dispose(), "header bytes differ");
            Throws<ArgumentOutOfRangeException>(() => new RingReader(ring.Path, 0, ring.SlotBytes, 128, 64).Dispose(), "zero slots");
            ring.Reader().Dispose();
        }
        using (var ring = new TestRing(2, 100, magic: "SSRING02"))
            Throws<InvalidDataException>(() => ring.Reader().Dispose(), "bad magic");
        using (var ring = new TestRing(2, 100, version: 2))
            Throws<InvalidDataException>(() => ring.Reader().Dispose(), "bad version");
        string missing = Path.Combine(Path.GetTempPath(), "ssring-missing-" + Guid.NewGuid().ToString("N") + ".ring");
        Throws<FileNotFoundException>(() => new RingReader(missing, 1, 128, 128, 64).Dispose(), "missing file");
        // header claims more slots than the file holds
        using (var ring = new TestRing(2, 100))
        {
            ring.At(16, BitConverter.GetBytes(5u));
            Throws<InvalidDataException>(() => new RingReader(ring.Path, 5, ring.SlotBytes, 128, 64).Dispose(), "file too small");
        }
    }

    static void RingNeverWrittenIsStale()
    {
        using (var ring = new TestRing(2, 64))
        using (var r = ring.Reader())
        {
            RingReadStatus st;
            Check(!r.TryRead(0, 0, ring.Pixels(0), 0, new byte[64], out st), "never written");
            Eq(RingReadStatus.Stale, st, "status");
        }
    }

    static void RingLappedIsStale()
    {
        using (var ring = new TestRing(2, 300))
        using (var r = ring.Reader())
        {
            var dst = new byte[300];
            RingReadStatus st;
            ring.Write(0, 4, 1, 10, 10, 3);
            ring.Write(0, 6, 1, 10, 10, 3); // lapped: slot 0 reused for chunk 6
            Check(!r.TryRead(0, 4, ring.Pixels(0), 300, dst, out st), "lapped");
            Eq(RingReadStatus.Stale, st, "status");
            Eq(13UL, r.LastSeqBegin, "seq_begin seen");
            Eq(14UL, r.LastSeqEnd, "seq_end seen");
            Check(r.TryRead(0, 6, ring.Pixels(0), 300, dst, out st), "newest ok");
            Check(Same(Pattern(6, 300), dst, 300), "newest bytes");
            Check(!r.TryRead(0, 7, ring.Pixels(0), 300, dst, out st), "future chunk");
            Eq(RingReadStatus.Stale, st, "future is stale");
        }
    }

    static void RingTornWriteIsStale()
    {
        using (var ring = new TestRing(2, 300))
        using (var r = ring.Reader())
        {
            var dst = new byte[300];
            RingReadStatus st;
            ring.Write(1, 2, 1, 10, 10, 3);
            ring.Begin(1, 5); // write of chunk 5 has begun, seq_end still says chunk 2
            Check(!r.TryRead(1, 5, ring.Pixels(1), 300, dst, out st), "in-progress chunk");
            Eq(RingReadStatus.Stale, st, "torn: new");
            Check(!r.TryRead(1, 2, ring.Pixels(1), 300, dst, out st), "chunk being overwritten");
            Eq(RingReadStatus.Stale, st, "torn: old");
        }
    }

    static void RingOverwrittenWhileCopying()
    {
        using (var ring = new TestRing(1, 300))
        using (var r = ring.Reader())
        {
            var dst = new byte[300];
            RingReadStatus st;
            ring.Write(0, 1, 1, 10, 10, 3);
            int calls = 0;
            r.AfterCopyForTest = () => { calls++; ring.Write(0, 2, 1, 10, 10, 3); };
            Check(!r.TryRead(0, 1, ring.Pixels(0), 300, dst, out st), "overwritten during copy");
            Eq(RingReadStatus.Stale, st, "status");
            Eq(1, calls, "hook ran once");
            // only seq_begin moved during the copy (writer still in W2): still stale
            r.AfterCopyForTest = () => ring.Begin(0, 3);
            Check(!r.TryRead(0, 2, ring.Pixels(0), 300, dst, out st), "begun during copy");
            Eq(RingReadStatus.Stale, st, "status 2");
        }
    }

    static void RingBadRefs()
    {
        using (var ring = new TestRing(2, 300))
        using (var r = ring.Reader())
        {
            var dst = new byte[1024];
            RingReadStatus st;
            ring.Write(0, 1, 1, 10, 10, 3);
            Check(!r.TryRead(2, 1, ring.Pixels(0), 300, dst, out st) && st == RingReadStatus.BadRef, "slot out of range");
            Check(!r.TryRead(-1, 1, ring.Pixels(0), 300, dst, out st) && st == RingReadStatus.BadRef, "negative slot");
            Check(!r.TryRead(0, 1, ring.Pixels(1), 300, dst, out st) && st == RingReadStatus.BadRef, "wrong offset");
            Check(!r.TryRead(0, 1, ring.Pixels(0), r.SlotCapacity + 1, dst, out st) && st == RingReadStatus.BadRef, "too long");
            Check(!r.TryRead(0, 1UL << 63, ring.Pixels(0), 300, dst, out st) && st == RingReadStatus.BadRef, "huge sequence");
            Check(!r.TryRead(0, 1, ring.Pixels(0), 299, dst, out st) && st == RingReadStatus.Mismatch, "length differs from header");
            Throws<ArgumentException>(() => r.TryRead(0, 1, ring.Pixels(0), 300, new byte[10], out st), "small destination");
            ring.Write(1, 3, 1, 10, 10, 3, payloadOverride: 7);
            Check(!r.TryRead(1, 3, ring.Pixels(1), 300, dst, out st) && st == RingReadStatus.Mismatch, "payload_length mismatch");
        }
    }

    static void RingReadAndDispose()
    {
        using (var ring = new TestRing(1, 64))
        {
            var r = ring.Reader();
            var px = ring.Write(0, 0, 1, 4, 4, 4);
            var dst = new byte[64];
            RingReadStatus st;
            Check(r.TryRead(0, 0, ring.Pixels(0), 64, dst, out st), "read");
            Check(Same(px, dst, 64), "bytes");
            r.Dispose();
            r.Dispose(); // idempotent
            Throws<ObjectDisposedException>(() => r.TryRead(0, 0, ring.Pixels(0), 64, dst, out st), "read after dispose");
        }
    }

    // ---- jitter buffer tests ----

    const double Fps = 16.0;

    static byte[] Frames(long firstIndex, int count, int frameBytes)
    {
        var b = new byte[count * frameBytes];
        for (int f = 0; f < count; f++)
            for (int i = 0; i < frameBytes; i++) b[f * frameBytes + i] = (byte)(firstIndex + f + i * 7);
        return b;
    }

    static void CheckContent(JitterFrame fr, int frameBytes)
    {
        for (int i = 0; i < frameBytes; i++)
            if (fr.Buffer[i] != (byte)(fr.FrameIndex + i * 7)) throw new Exception("frame " + fr.FrameIndex + " content wrong at " + i);
    }

    static void JitterSteadyFromBursts()
    {
        const int fb = 12;
        // Start-up buffering of two chunks (1 s) covers the 0.2 s arrival jitter below.
        var jb = new JitterBuffer(fb, 32, Fps, startFrames: 16);
        // Chunks of 8 frames every 0.5 s on average (= 16 fps), each arriving up to 0.2 s late.
        var rng = new Random(7);
        var arrivals = new double[12];
        for (int c = 0; c < arrivals.Length; c++) arrivals[c] = 1.0 + c * 0.5 + rng.NextDouble() * 0.2;
        int nextChunk = 0;
        long pushed = 0, expectIndex = 0;
        double t0 = double.NaN;
        var newTimes = new List<double>();
        int underrunsWhilePlaying = -1;
        // The game polls at 240 Hz (tick k at k/240 s: exact multiples of 1/16 occur every 15 ticks).
        for (int tick = 0; tick <= 240 * 8; tick++)
        {
            double now = tick / 240.0;
            while (nextChunk < arrivals.Length && arrivals[nextChunk] <= now)
            {
                Eq(8, jb.Push(Frames(pushed, 8, fb), 0, 8, now), "push accepted");
                pushed += 8;
                nextChunk++;
            }
            JitterFrame fr;
            if (!jb.TryGetFrame(now, out fr)) { Check(double.IsNaN(t0), "false only before start"); continue; }
            if (double.IsNaN(t0)) t0 = now;
            if (fr.IsNew)
            {
                Eq(expectIndex, fr.FrameIndex, "frames in order, none skipped");
                CheckContent(fr, fb);
                newTimes.Add(now);
                expectIndex++;
                if (expectIndex == 96) underrunsWhilePlaying = jb.Underruns;
            }
        }
        Eq(96L, expectIndex, "all frames shown");
        Eq(0, underrunsWhilePlaying, "no underrun until the last frame");
        Eq(1, jb.Underruns, "the story running out of frames is the one underrun");
        Eq(0L, jb.SkippedFrames, "no skips");
        for (int k = 0; k < newTimes.Count; k++)
            Check(Math.Abs(newTimes[k] - (t0 + k / Fps)) < 1e-9, "frame " + k + " shown at t0 + k/16 (got " + newTimes[k] + ")");
    }

    static void JitterStartupByFrames()
    {
        var jb = new JitterBuffer(4, 16, Fps, startFrames: 5);
        JitterFrame fr;
        Check(!jb.TryGetFrame(0.0, out fr), "empty");
        jb.Push(Frames(0, 4, 4), 0, 4, 0.1);
        Check(!jb.TryGetFrame(5.0, out fr), "4 < 5 frames: still buffering, however long");
        Eq(JitterState.Starting, jb.State, "starting");
        jb.Push(Frames(4, 1, 4), 0, 1, 5.1);
        Check(jb.TryGetFrame(5.2, out fr), "started");
        Eq(0L, fr.FrameIndex, "first frame");
        Check(fr.IsNew && !fr.IsHeld, "new, not held");
        Eq(JitterState.Playing, jb.State, "playing");
        Check(jb.TryGetFrame(5.2 + 1 / Fps, out fr), "next");
        Eq(1L, fr.FrameIndex, "second frame after 1/16 s");
    }

    static void JitterUnderrunAndRecovery()
    {
        const int fb = 3;
        var jb = new JitterBuffer(fb, 16, Fps, startFrames: 3);
        JitterFrame fr;
        jb.Push(Frames(0, 3, fb), 0, 3, 0.0);
        double t = 10.0;
        for (int k = 0; k < 3; k++)
        {
            Check(jb.TryGetFrame(t + k / Fps, out fr), "playing " + k);
            Eq((long)k, fr.FrameIndex, "index " + k);
        }
        Check(jb.TryGetFrame(t + 3 / Fps, out fr), "underrun still returns a frame");
        Eq(2L, fr.FrameIndex, "holds the last frame");
        Check(fr.IsHeld && !fr.IsNew, "held, not new");
        CheckContent(fr, fb);
        Eq(1, jb.Underruns, "one underrun");
        Eq(JitterState.Rebuffering, jb.State, "rebuffering");
        Check(jb.TryGetFrame(t + 10 / Fps, out fr) && fr.FrameIndex == 2, "still held later");
        Eq(1, jb.Underruns, "one underrun per episode");
        jb.Push(Frames(3, 2, fb), 0, 2, 11.0);
        Check(jb.TryGetFrame(11.0, out fr) && fr.FrameIndex == 2 && fr.IsHeld, "2 < 3 frames: keeps holding");
        jb.Push(Frames(5, 1, fb), 0, 1, 11.5);
        Check(jb.TryGetFrame(11.6, out fr), "recovered");
        Eq(3L, fr.FrameIndex, "resumes with the next frame, none lost");
        Check(fr.IsNew && !fr.IsHeld, "new again");
        Eq(JitterState.Playing, jb.State, "playing");
        Check(jb.TryGetFrame(11.6 + 1 / Fps - 1e-6, out fr) && fr.FrameIndex == 3, "schedule restarts at recovery time");
        Check(jb.TryGetFrame(11.6 + 1 / Fps, out fr) && fr.FrameIndex == 4, "next at +1/16");
        Check(jb.TryGetFrame(11.6 + 2 / Fps, out fr) && fr.FrameIndex == 5, "next at +2/16");
        Eq(0L, jb.SkippedFrames, "no skips");
    }

    static void JitterCapacityRefuse()
    {
        var jb = new JitterBuffer(2, 4, Fps, startFrames: 1);
        Eq(4, jb.Push(Frames(0, 6, 2), 0, 6, 0.0), "takes what fits");
        Eq(2L, jb.RefusedFrames, "refused count");
        Eq(4, jb.QueuedFrames, "queued = capacity");
        Eq(0, jb.Push(Frames(4, 1, 2), 0, 1, 0.0), "full");
        JitterFrame fr;
        Check(jb.TryGetFrame(1.0, out fr) && fr.FrameIndex == 0, "oldest first");
        Eq(1, jb.Push(Frames(4, 1, 2), 0, 1, 1.0), "room again after one is presented");
        // The frame on screen is never overwritten by pushes (capacity + 1 buffers).
        Eq(0, jb.Push(Frames(5, 1, 2), 0, 1, 1.0), "full again");
        CheckContent(fr, 2);
        Eq(0L, fr.FrameIndex, "screen frame intact");
    }

    static void JitterTimingExact()
    {
        var jb = new JitterBuffer(1, 64, Fps, startFrames: 1);
        double t0 = 1000.1; // not a binary fraction
        long pushed = 0;
        jb.Push(Frames(0, 32, 1), 0, 32, t0);
        pushed = 32;
        JitterFrame fr;
        Check(jb.TryGetFrame(t0, out fr) && fr.FrameIndex == 0, "start");
        for (long k = 1; k < 20000; k++)
        {
            if (jb.QueuedFrames < 8) { jb.Push(Frames(pushed, 32, 1), 0, 32, t0); pushed += 32; }
            double due = t0 + k / Fps;
            Check(jb.TryGetFrame(due - 1e-6, out fr), "before");
            if (fr.FrameIndex != k - 1) throw new Exception("1 us before frame " + k + " showed " + fr.FrameIndex);
            Check(jb.TryGetFrame(due, out fr), "at");
            if (fr.FrameIndex != k) throw new Exception("at t0 + " + k + "/16 showed " + fr.FrameIndex);
        }
        Eq(0, jb.Underruns, "no underrun");
        Eq(0L, jb.SkippedFrames, "no skips over 20000 frames (~21 min): no drift");
    }

    static void JitterLatePollSkips()
    {
        var jb = new JitterBuffer(1, 16, Fps, startFrames: 1);
        jb.CatchUp = JitterCatchUp.Skip;
        jb.Push(Frames(0, 10, 1), 0, 10, 0.0);
        JitterFrame fr;
        Check(jb.TryGetFrame(2.0, out fr) && fr.FrameIndex == 0, "start");
        Check(jb.TryGetFrame(2.0 + 3.5 / Fps, out fr), "late poll (game hitch)");
        Eq(3L, fr.FrameIndex, "shows the frame due now");
        Eq(2L, jb.SkippedFrames, "frames 1, 2 skipped");
        Check(jb.TryGetFrame(2.0 + 4 / Fps, out fr) && fr.FrameIndex == 4, "back on the clock");
    }

    static void JitterResetReusesBuffers()
    {
        var jb = new JitterBuffer(2, 4, Fps, startFrames: 2);
        jb.Push(Frames(0, 4, 2), 0, 4, 0.0);
        JitterFrame fr;
        Check(jb.TryGetFrame(0.0, out fr) && fr.FrameIndex == 0, "playing");
        var pool = new HashSet<byte[]>();
        for (int k = 1; k < 4; k++) { jb.TryGetFrame(k / Fps, out fr); pool.Add(fr.Buffer); }
        jb.TryGetFrame(10.0, out fr);
        Eq(1, jb.Underruns, "underrun before the reset");
        jb.Reset(8.0, 3);
        Eq(JitterState.Starting, jb.State, "starting again");
        Eq(0, jb.QueuedFrames, "nothing queued");
        Eq(0, jb.Underruns, "counters restart");
        Eq(8.0, jb.FramesPerSecond, "new fps");
        Check(!jb.TryGetFrame(20.0, out fr), "the old frame is gone: nothing to show until the new stream starts");
        Eq(2, jb.Push(Frames(0, 2, 2), 0, 2, 20.0), "push");
        Check(!jb.TryGetFrame(20.0, out fr), "2 < 3 frames: buffering");
        jb.Push(Frames(2, 1, 2), 0, 1, 20.0);
        Check(jb.TryGetFrame(20.0, out fr), "started");
        Eq(0L, fr.FrameIndex, "frame indices restart at 0");
        CheckContent(fr, 2);
        Check(jb.TryGetFrame(20.0 + 1 / 8.0, out fr) && fr.FrameIndex == 1, "at the new fps");
        Check(pool.Contains(fr.Buffer), "the same frame buffers, none allocated");
        Throws<ArgumentOutOfRangeException>(() => jb.Reset(16.0, 5), "start above capacity");
    }

    static void JitterNoAllocation()
    {
        const int fb = 4096;
        var jb = new JitterBuffer(fb, 64, Fps, startFrames: 4);
        var chunk = Frames(0, 8, fb);
        JitterFrame fr;
        // warm up (JIT, and the copy buffers: allocated when first needed, 8 queued + the one on screen)
        double t = 0;
        for (int c = 0; c < 2; c++)
        {
            jb.Push(chunk, 0, 8, t);
            for (int k = 0; k < 8; k++) { jb.TryGetFrame(t, out fr); t += 1 / Fps; }
        }
        var m = typeof(GC).GetMethod("GetAllocatedBytesForCurrentThread");
        long before = m != null ? (long)m.Invoke(null, null) : 0;
        int gen0 = GC.CollectionCount(0);
        for (int c = 0; c < 2000; c++)
        {
            jb.Push(chunk, 0, 8, t);
            for (int k = 0; k < 8; k++) { jb.TryGetFrame(t, out fr); t += 1 / Fps; }
        }
        if (m != null)
        {
            long after = (long)m.Invoke(null, null);
            // 16000 frames of 4 KB; allow for the two reflection calls only.
            Check(after - before < 4096, "allocated " + (after - before) + " bytes for 16000 frames");
        }
        else
        {
            Check(GC.CollectionCount(0) == gen0, "no gen0 collection while moving 64 MB of frames");
        }
        Eq(16016L, jb.PresentedFrames, "all presented");
        Eq(0L, jb.SkippedFrames, "none skipped");
        Eq(0, jb.Underruns, "no underrun");
    }

    static void JitterNothingUpFront()
    {
        // 36 frames of 832x480 RGBA: 57 MB if allocated up front; the buffer allocates frames only when Push copies them
        var m = typeof(GC).GetMethod("GetAllocatedBytesForCurrentThread");
        long before = (long)m.Invoke(null, null);
        var jb = new JitterBuffer(832 * 480 * 4, 36, Fps, startFrames: 4);
        long allocated = (long)m.Invoke(null, null) - before;
        Check(allocated < 16384, "a 36-frame buffer of 1.6 MB frames allocated " + allocated + " bytes up front");
        Eq(0, jb.QueuedFrames, "empty");
    }

    static void JitterSharedChunks()
    {
        const int fb = 4;
        var jb = new JitterBuffer(fb, 6, Fps, startFrames: 1);
        var released = new List<byte[]>();
        Action<byte[]> release = released.Add;
        var a = Frames(0, 3, fb);
        var b = new byte[2 + 4 * fb];  // frames at offset 2
        Buffer.BlockCopy(Frames(3, 4, fb), 0, b, 2, 4 * fb);
        Eq(3, jb.PushShared(a, 0, 3, 0.0, release), "a: 3 frames");
        Eq(3, jb.PushShared(b, 2, 4, 0.0, release), "b: 3 of 4 fit");
        Eq(1L, jb.RefusedFrames, "one refused");
        var full = new byte[fb];
        Eq(0, jb.PushShared(full, 0, 1, 0.0, release), "full: refused, still the caller's");
        JitterFrame fr;
        for (int k = 0; k < 6; k++)
        {
            Check(jb.TryGetFrame(k / Fps, out fr), "frame " + k);
            Eq((long)k, fr.FrameIndex, "in order");
            Check(ReferenceEquals(fr.Buffer, k < 3 ? a : b), "by reference, no copy");
            Eq(k < 3 ? k * fb : 2 + (k - 3) * fb, fr.Offset, "offset of frame " + k);
            for (int i = 0; i < fb; i++) if (fr.Buffer[fr.Offset + i] != (byte)(k + i * 7)) throw new Exception("frame " + k + " content");
            Eq(k < 3 ? 0 : 1, released.Count, "a is released once its last frame has left the screen (k=" + k + ")");
        }
        Check(ReferenceEquals(released[0], a), "a released");
        jb.Reset(Fps, 1);
        Eq(2, released.Count, "Reset releases b (on screen)");
        Check(ReferenceEquals(released[1], b), "b released");
        Check(!released.Contains(full), "a refused buffer is never released");
    }
}
