// The gateway's binary chunk frame: "SSC1" + u32 LE N + N bytes FrameChunk JSON + raw pixels.
using System;
using System.Buffers.Binary;

namespace ShotStream.Core
{
    public static class ChunkFrame
    {
        public const int HeaderSize = 8;
        public const uint Magic = 0x31435353;  // "SSC1" read as little-endian u32

        /// <summary>True when the frame starts with "SSC1" (other magics are reserved: ignore such frames).</summary>
        public static bool HasKnownMagic(byte[] buffer, int offset, int count)
        {
            return count >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(buffer, offset, 4)) == Magic;
        }

        /// <summary>Decodes one frame. Pixels point into <paramref name="buffer"/> (no copy): consume them
        /// before the buffer is reused. Throws JsonException/FormatException on a malformed frame.</summary>
        public static FrameChunk Decode(byte[] buffer, int offset, int count)
        {
            if (buffer == null) throw new ArgumentNullException(nameof(buffer));
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
            if (count < HeaderSize) throw new FormatException("binary frame of " + count + " bytes is shorter than the 8-byte SSC1 header");
            if (!HasKnownMagic(buffer, offset, count)) throw new FormatException("binary frame does not start with the magic \"SSC1\"");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(buffer, offset + 4, 4));
            if (n > (uint)(count - HeaderSize)) throw new FormatException("SSC1 header length " + n + " exceeds the frame (" + count + " bytes)");
            FrameChunk chunk = ProtoMessage.FromJsonValue<FrameChunk>(Json.Parse(buffer, offset + HeaderSize, (int)n));
            if (chunk.HasPixels || chunk.RingSlot != null)
                throw new FormatException("SSC1 header must not carry pixels or a ring slot");
            int pixelStart = offset + HeaderSize + (int)n;
            int pixelBytes = count - HeaderSize - (int)n;
            long expected;
            try { expected = chunk.ExpectedPixelBytes; }
            catch (OverflowException) { throw new FormatException("SSC1 chunk dimensions overflow"); }
            if (expected != pixelBytes)
                throw new FormatException("SSC1 chunk " + chunk.ChunkSeq + " carries " + pixelBytes + " pixel bytes, expected numFrames*height*width*channels = "
                    + chunk.NumFrames + "*" + chunk.Height + "*" + chunk.Width + "*" + chunk.Channels + " = " + expected);
            chunk.Pixels = new ArraySegment<byte>(buffer, pixelStart, pixelBytes);
            return chunk;
        }
    }
}
