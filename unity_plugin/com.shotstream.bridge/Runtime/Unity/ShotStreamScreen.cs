// Shows a session's frames on a Texture2D at the session's fps through a JitterBuffer.
using System;
using ShotStream.Core;
using UnityEngine;
using UnityEngine.UI;

namespace ShotStream.Unity
{
    /// <summary>
    /// Owns an RGBA32 <see cref="Texture2D"/> sized from the session (SessionOpened width/height) and
    /// presents frames from a <see cref="JitterBuffer"/> (16 fps by default) in Update, driving any of:
    /// a RawImage, a Renderer's material (main texture), or a RenderTexture (Graphics.Blit).
    /// <para>Row order: the server sends frames top row first; Unity's texture origin is bottom-left
    /// (LoadRawTextureData's first row is the bottom one). Each new frame is copied row by row,
    /// reversed, into one reusable buffer (allocated when the size changes, never per frame) and
    /// that buffer is uploaded with LoadRawTextureData(byte[]) + Apply(false). Uploads allocate
    /// nothing per frame.</para>
    /// </summary>
    [AddComponentMenu("ShotStream/ShotStream Screen")]
    public sealed class ShotStreamScreen : MonoBehaviour
    {
        [Header("Targets (any, all optional)")]
        [SerializeField] RawImage rawImage = null;
        [SerializeField] Renderer targetRenderer = null;
        [Tooltip("When set, each new frame is blitted into this RenderTexture")]
        [SerializeField] RenderTexture renderTexture = null;

        [Header("Playback")]
        [Tooltip("Presentation rate; the session's fps replaces it when the session reports one")]
        [SerializeField] float framesPerSecond = 16f;
        [Tooltip("Frames queued before playback (re)starts")]
        [SerializeField] int startFrames = 4;
        [Tooltip("Minimum jitter buffer capacity in frames (grown to hold the session's chunks in flight)")]
        [SerializeField] int capacityFrames = 64;
        [SerializeField] FilterMode filterMode = FilterMode.Bilinear;

        Texture2D texture;
        JitterBuffer jitter;
        byte[] flipped;
        int width, height;
        long pushedFrames;
        long presentedFrameIndex = -1;

        public const int BytesPerPixel = 4;  // RGBA32
        public Texture2D Texture { get { return texture; } }
        public JitterBuffer Jitter { get { return jitter; } }
        public int Width { get { return width; } }
        public int Height { get { return height; } }
        public int FrameBytes { get { return width * height * BytesPerPixel; } }
        /// <summary>Frames accepted so far (arrival index of the next frame).</summary>
        public long PushedFrames { get { return pushedFrames; } }
        /// <summary>Arrival index of the frame on screen (-1 before the first).</summary>
        public long PresentedFrameIndex { get { return presentedFrameIndex; } }

        public RawImage RawImage { get { return rawImage; } set { rawImage = value; Bind(); } }
        public Renderer TargetRenderer { get { return targetRenderer; } set { targetRenderer = value; Bind(); } }
        public RenderTexture RenderTarget { get { return renderTexture; } set { renderTexture = value; } }
        /// <summary>Frames queued before playback (re)starts; applies at the next Configure/OnSessionOpened.</summary>
        public int StartFrames { get { return startFrames; } set { startFrames = Math.Max(1, value); } }

        /// <summary>Sizes the texture and jitter buffer for a session (RGBA8 frames only).</summary>
        public void OnSessionOpened(SessionOpened session)
        {
            if (session == null) throw new ArgumentNullException(nameof(session));
            if (session.FrameFormat != FrameFormat.Rgba8)
                throw new NotSupportedException("ShotStreamScreen needs FRAME_FORMAT_RGBA8 frames, the session uses " + ProtoEnums.Name(session.FrameFormat));
            uint perChunk = Math.Max(session.FramesFirstChunk, session.FramesPerChunk);
            int capacity = (int)Math.Min(4096u, Math.Max((uint)Math.Max(capacityFrames, 1), (session.MaxChunksInFlight + 1) * Math.Max(perChunk, 1u)));
            // never wait for more frames than the first chunk brings (a short shot would stall)
            int start = session.FramesFirstChunk > 0 ? (int)Math.Min((uint)Math.Max(startFrames, 1), session.FramesFirstChunk) : startFrames;
            Configure((int)session.Width, (int)session.Height, session.Fps > 0 ? session.Fps : framesPerSecond, capacity, start);
        }

        /// <summary>(Re)creates the texture, the flip buffer and the jitter buffer.</summary>
        public void Configure(int frameWidth, int frameHeight, double fps = 16.0, int capacity = 64, int start = 0)
        {
            if (frameWidth < 1 || frameHeight < 1) throw new ArgumentOutOfRangeException(nameof(frameWidth), "frame size must be positive");
            if (texture == null || width != frameWidth || height != frameHeight)
            {
                if (texture != null) Destroy(texture);
                texture = new Texture2D(frameWidth, frameHeight, TextureFormat.RGBA32, false);
                texture.name = "ShotStream frame";
                texture.filterMode = filterMode;
                texture.wrapMode = TextureWrapMode.Clamp;
                width = frameWidth; height = frameHeight;
                flipped = new byte[FrameBytes];
            }
            jitter = new JitterBuffer(FrameBytes, Math.Max(capacity, 1), fps, Math.Min(Math.Max(start > 0 ? start : startFrames, 1), Math.Max(capacity, 1)));
            pushedFrames = 0;
            presentedFrameIndex = -1;
            Bind();
        }

        void Bind()
        {
            if (texture == null) return;
            if (rawImage != null) rawImage.texture = texture;
            if (targetRenderer != null && targetRenderer.material != null) targetRenderer.material.mainTexture = texture;
        }

        /// <summary>Queues <paramref name="frameCount"/> top-down RGBA frames from source[offset..]
        /// (copied: the source may be reused right after). Returns the frames accepted.</summary>
        public int PushFrames(byte[] source, int offset, int frameCount)
        {
            return PushFrames(source, offset, frameCount, Time.realtimeSinceStartupAsDouble);
        }

        public int PushFrames(byte[] source, int offset, int frameCount, double nowSeconds)
        {
            if (jitter == null) throw new InvalidOperationException("ShotStreamScreen is not configured (no session opened yet)");
            int accepted = jitter.Push(source, offset, frameCount, nowSeconds);
            pushedFrames += accepted;
            return accepted;
        }

        /// <summary>Marks the end of the stream (the last frame stays up).</summary>
        public void CompleteAdding() { if (jitter != null) jitter.CompleteAdding(); }

        /// <summary>Shows the frame due at <paramref name="nowSeconds"/>; true when a new frame was uploaded.</summary>
        public bool Present(double nowSeconds)
        {
            if (jitter == null) return false;
            JitterFrame frame;
            if (!jitter.TryGetFrame(nowSeconds, out frame) || !frame.IsNew) return false;
            presentedFrameIndex = frame.FrameIndex;
            Upload(frame.Buffer, 0);
            return true;
        }

        /// <summary>Uploads one top-down RGBA frame at source[offset..]: rows reversed into the
        /// reusable buffer, LoadRawTextureData, Apply(false), then the RenderTexture blit.</summary>
        public void Upload(byte[] source, int offset)
        {
            if (texture == null) throw new InvalidOperationException("ShotStreamScreen is not configured");
            if (source == null) throw new ArgumentNullException(nameof(source));
            int rowBytes = width * BytesPerPixel;
            if (offset < 0 || (long)offset + (long)rowBytes * height > source.Length) throw new ArgumentOutOfRangeException(nameof(offset));
            for (int y = 0; y < height; y++)
                Buffer.BlockCopy(source, offset + y * rowBytes, flipped, (height - 1 - y) * rowBytes, rowBytes);
            texture.LoadRawTextureData(flipped);
            texture.Apply(false);
            if (renderTexture != null) Graphics.Blit(texture, renderTexture);
        }

        void Update() { Present(Time.realtimeSinceStartupAsDouble); }

        void OnDestroy()
        {
            if (texture != null) Destroy(texture);
            texture = null;
            jitter = null;
        }
    }
}
