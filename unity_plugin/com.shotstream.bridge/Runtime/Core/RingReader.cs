// ShotStream frame ring reader (layout version 1; see service/ring.py for THE layout and the
// seqlock rules, and tests/ring_reader.c for the reference C reader).
// Plain C# 7.2, no UnityEngine; compile with -unsafe.
using System;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Threading;

namespace ShotStream.Core
{
    /// <summary>Result of one <see cref="RingReader.TryRead(int, ulong, long, long, byte[], out RingReadStatus)"/>.</summary>
    public enum RingReadStatus
    {
        /// <summary>The destination holds exactly the bytes of the requested chunk.</summary>
        Ok = 0,
        /// <summary>The slot no longer (or not yet fully) holds the chunk: the copy was discarded.
        /// Retrying is pointless; ask the server for the next chunk.</summary>
        Stale = 1,
        /// <summary>The ref does not fit the layout (slot, offset, length or sequence out of range).</summary>
        BadRef = 2,
        /// <summary>Seqlock passed but the slot header disagrees with the ref (a protocol bug, not staleness).</summary>
        Mismatch = 3,
    }

    /// <summary>Frame metadata of a slot, read under the same seqlock as the pixels.</summary>
    public struct RingSlotInfo
    {
        public ulong ChunkSequence;
        public uint NumFrames;
        public uint Height;
        public uint Width;
        public uint Channels;
        public ulong PayloadLength;
    }

    /// <summary>
    /// Read-only client of one session's shared-memory frame ring. Opens the ring file by path
    /// (never by map name), validates its header against the layout the server announced, and
    /// copies chunks out with the seqlock protocol: seq_end first (acquire), seq_begin, copy,
    /// full fence, seq_begin again. A torn or lapped read reports <see cref="RingReadStatus.Stale"/>;
    /// wrong bytes are never reported as Ok. Not thread-safe (one reader per thread).
    /// </summary>
    public sealed unsafe class RingReader : IDisposable
    {
        public const int LayoutVersion = 1;
        public static readonly byte[] Magic = { (byte)'S', (byte)'S', (byte)'R', (byte)'I', (byte)'N', (byte)'G', (byte)'0', (byte)'1' };
        const ulong MaxSequence = (1UL << 63) - 2; // 2*s + 2 must fit in a u64
        const int Align = 64;

        // Slot header field offsets.
        const int OffSeqBegin = 0, OffSeqEnd = 8, OffChunkSeq = 16, OffNumFrames = 24, OffHeight = 28,
            OffWidth = 32, OffChannels = 36, OffPayloadLength = 40;

        readonly string _path;
        MemoryMappedFile _mmf;
        MemoryMappedViewAccessor _view;
        byte* _base;
        readonly long _fileBytes;

        public string Path { get { return _path; } }
        public int SlotCount { get; private set; }
        public long SlotBytes { get; private set; }
        public int HeaderBytes { get; private set; }
        public int SlotHeaderBytes { get; private set; }
        /// <summary>Most pixel bytes one slot can hold (slot_bytes - slot_header_bytes).</summary>
        public long SlotCapacity { get { return SlotBytes - SlotHeaderBytes; } }
        /// <summary>seq_begin / seq_end seen by the last TryRead (diagnostics for Stale).</summary>
        public ulong LastSeqBegin { get; private set; }
        public ulong LastSeqEnd { get; private set; }

        /// <summary>Test hook: runs after the copy, before the fence and the final seq_begin check.</summary>
        internal Action AfterCopyForTest;

        /// <summary>Open <paramref name="path"/> and check its header against the server's layout
        /// (RingLayout: slot_count, slot_bytes, header_bytes, slot_header_bytes).</summary>
        /// <exception cref="InvalidDataException">not a ring file of layout 1, or a different layout.</exception>
        public RingReader(string path, int slotCount, long slotBytes, int headerBytes, int slotHeaderBytes)
        {
            if (path == null) throw new ArgumentNullException("path");
            if (slotCount < 1) throw new ArgumentOutOfRangeException("slotCount");
            if (headerBytes < 128 || slotHeaderBytes < 48 || slotBytes <= slotHeaderBytes)
                throw new ArgumentOutOfRangeException("slotBytes", "layout sizes out of range");
            _path = path;
            FileStream fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            try
            {
                _fileBytes = fs.Length;
                if (_fileBytes < 128) throw new InvalidDataException(path + ": too small for a ring file");
                _mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, false);
                fs = null; // owned by the mapping now
                _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                byte* p = null;
                _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                _base = p + _view.PointerOffset;
                ValidateHeader(slotCount, slotBytes, headerBytes, slotHeaderBytes);
            }
            catch
            {
                if (fs != null) fs.Dispose();
                Dispose();
                throw;
            }
        }

        void ValidateHeader(int slotCount, long slotBytes, int headerBytes, int slotHeaderBytes)
        {
            for (int i = 0; i < 8; i++)
                if (_base[i] != Magic[i]) throw new InvalidDataException(_path + ": not a ShotStream ring file (bad magic)");
            uint version = *(uint*)(_base + 8);
            if (version != LayoutVersion)
                throw new InvalidDataException(_path + ": ring layout version " + version + ", this reader supports " + LayoutVersion);
            uint hb = *(uint*)(_base + 12), sc = *(uint*)(_base + 16), shb = *(uint*)(_base + 20);
            ulong sb = *(ulong*)(_base + 24);
            if (hb != (uint)headerBytes || sc != (uint)slotCount || shb != (uint)slotHeaderBytes || sb != (ulong)slotBytes)
                throw new InvalidDataException(string.Format(
                    "{0}: header (header_bytes={1}, slot_count={2}, slot_header_bytes={3}, slot_bytes={4}) does not match the layout ({5}, {6}, {7}, {8})",
                    _path, hb, sc, shb, sb, headerBytes, slotCount, slotHeaderBytes, slotBytes));
            if (hb % Align != 0 || shb % Align != 0 || sb % Align != 0 || sb <= shb
                || (ulong)hb + (ulong)sc * sb > (ulong)_fileBytes)
                throw new InvalidDataException(_path + ": inconsistent ring header");
            HeaderBytes = headerBytes;
            SlotCount = slotCount;
            SlotHeaderBytes = slotHeaderBytes;
            SlotBytes = slotBytes;
        }

        /// <summary>Byte offset of slot <paramref name="slot"/>'s pixels (what RingSlot.offset must be).</summary>
        public long PixelOffset(int slot)
        {
            return HeaderBytes + (long)slot * SlotBytes + SlotHeaderBytes;
        }

        /// <summary>Copy chunk <paramref name="sequence"/> (a RingSlot ref) into <paramref name="destination"/>[0..length).</summary>
        /// <returns>true only with status Ok; otherwise the destination content is undefined and must not be used.</returns>
        public bool TryRead(int slot, ulong sequence, long offset, long length, byte[] destination, out RingReadStatus status)
        {
            RingSlotInfo info;
            return TryRead(slot, sequence, offset, length, destination, 0, out info, out status);
        }

        /// <summary>As above, into destination[destinationOffset..], also returning the slot's frame metadata.</summary>
        public bool TryRead(int slot, ulong sequence, long offset, long length, byte[] destination, int destinationOffset,
            out RingSlotInfo info, out RingReadStatus status)
        {
            if (_view == null) throw new ObjectDisposedException("RingReader");
            if (destination == null) throw new ArgumentNullException("destination");
            info = default(RingSlotInfo);
            LastSeqBegin = LastSeqEnd = 0;
            // R0: the ref must fit the layout.
            if (slot < 0 || slot >= SlotCount || sequence > MaxSequence || offset != PixelOffset(slot)
                || length < 0 || length > SlotCapacity)
            {
                status = RingReadStatus.BadRef;
                return false;
            }
            if (destinationOffset < 0 || destinationOffset > destination.Length || destination.Length - destinationOffset < length)
                throw new ArgumentException("destination is smaller than the chunk (" + length + " bytes)", "destination");

            byte* s = _base + HeaderBytes + (long)slot * SlotBytes;
            ulong wantBegin = 2 * sequence + 1, wantEnd = 2 * sequence + 2;

            // R1: seq_end first, acquire load (one aligned 8-byte read).
            ulong end = (ulong)Volatile.Read(ref *(long*)(s + OffSeqEnd));
            // R2: seq_begin (early exit: a newer write has begun).
            ulong begin = (ulong)Volatile.Read(ref *(long*)(s + OffSeqBegin));
            LastSeqBegin = begin;
            LastSeqEnd = end;
            if (end != wantEnd || begin != wantBegin)
            {
                status = RingReadStatus.Stale;
                return false;
            }
            // R3: metadata and pixels into the caller's private buffer.
            info.ChunkSequence = *(ulong*)(s + OffChunkSeq);
            info.NumFrames = *(uint*)(s + OffNumFrames);
            info.Height = *(uint*)(s + OffHeight);
            info.Width = *(uint*)(s + OffWidth);
            info.Channels = *(uint*)(s + OffChannels);
            info.PayloadLength = *(ulong*)(s + OffPayloadLength);
            if (length > 0)
            {
                fixed (byte* d = destination)
                {
                    Buffer.MemoryCopy(s + SlotHeaderBytes, d + destinationOffset, destination.Length - destinationOffset, length);
                }
            }
            Action hook = AfterCopyForTest;
            if (hook != null) hook();
            // R4: full fence (orders the copy's loads before the re-check).
            Thread.MemoryBarrier();
            // R5: seq_begin last; a later write that began at any time during the copy shows here.
            begin = (ulong)Volatile.Read(ref *(long*)(s + OffSeqBegin));
            LastSeqBegin = begin;
            if (begin != wantBegin)
            {
                info = default(RingSlotInfo);
                status = RingReadStatus.Stale;
                return false;
            }
            // R6: the header must describe this ref.
            if (info.ChunkSequence != sequence || info.PayloadLength != (ulong)length)
            {
                status = RingReadStatus.Mismatch;
                return false;
            }
            status = RingReadStatus.Ok;
            return true;
        }

        public void Dispose()
        {
            if (_view != null)
            {
                if (_base != null)
                {
                    _view.SafeMemoryMappedViewHandle.ReleasePointer();
                    _base = null;
                }
                _view.Dispose();
                _view = null;
            }
            if (_mmf != null)
            {
                _mmf.Dispose();
                _mmf = null;
            }
        }
    }
}
