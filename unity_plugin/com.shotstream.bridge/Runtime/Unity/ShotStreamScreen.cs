// Shows a session's frames on a Texture2D at the session's fps through a JitterBuffer.
using System;
using System.Collections.Generic;
using ShotStream.Core;
using Unity.Collections;
using UnityEngine;
using UnityEngine.UI;

namespace ShotStream.Unity
{
    /// <summary>
    /// Owns an RGBA32 <see cref="Texture2D"/> sized from the session (SessionOpened width/height) and
    /// presents frames from a <see cref="JitterBuffer"/> (16 fps by default) in Update, driving any of:
    /// a RawImage, a Renderer (through a MaterialPropertyBlock, so no material is instanced), or a
    /// RenderTexture (Graphics.Blit).
    /// <para>One copy per frame on the main thread: the client's chunks are queued by reference (<see cref="PushChunk"/>:
    /// its pooled chunk buffer, handed back once the chunk's frames have left the screen), and each new frame is
    /// written straight into the texture's own memory (Texture2D.GetRawTextureData) bottom row first, as Unity's texture
    /// origin is bottom-left while the server sends the top row first, then Apply(false) uploads it. No intermediate
    /// buffer, no frame buffers allocated up front, nothing allocated per frame.</para>
    /// <para>Clock: playback follows the game's clock, not the wall clock. Each Update advances the screen's
    /// <see cref="PlaybackTime"/> by Time.unscaledDeltaTime (or Time.deltaTime with <see cref="FollowTimeScale"/>:
    /// time scale 0 pauses the video, 0.5 plays it at half speed), at most <see cref="MaxClockStep"/> per Update,
    /// and not at all while <see cref="Paused"/>. So an editor pause, an app in the background (no Updates) or a
    /// paused game (<see cref="Pause"/>, or time scale 0) holds the picture and drops nothing; the chunks stay
    /// unacked meanwhile, so the server stops at its credit window. A stall (a frame longer than one video frame)
    /// is handled by <see cref="CatchUp"/>: Delay (default) shows the next frame in line and plays on from there
    /// (nothing dropped, the video ends later), Skip jumps to the frame due now (the missed ones are counted in
    /// the jitter buffer's SkippedFrames).</para>
    /// <para>Unity sends no OnDestroy to this component in edit mode: code that uses it there (the
    /// editor preview) calls <see cref="Release"/>.</para>
    /// </summary>
    [AddComponentMenu("ShotStream/ShotStream Screen")]
    public sealed class ShotStreamScreen : MonoBehaviour
    {
        /// <summary>Jitter buffer capacity when no session has said how many frames can be in flight:
        /// (2 chunks in flight + 1) x 12 frames, the gateway's defaults.</summary>
        public const int FallbackCapacityFrames = 36;
        /// <summary>Most frames an automatic capacity reserves (a bound on memory whatever a session announces).</summary>
        public const int MaxAutomaticCapacityFrames = 4096;

        [Header("Targets (any, all optional)")]
        [SerializeField] RawImage rawImage = null;
        [SerializeField] Renderer targetRenderer = null;
        [Tooltip("Texture property of the Renderer's shader that shows the frames: _MainTex (built-in pipeline), _BaseMap (URP Lit/Unlit), _BaseColorMap (HDRP Lit)")]
        [SerializeField] string textureProperty = "_MainTex";
        [Tooltip("When set, each new frame is blitted into this RenderTexture")]
        [SerializeField] RenderTexture renderTexture = null;

        [Header("Playback")]
        [Tooltip("Presentation rate; the session's fps replaces it when the session reports one")]
        [SerializeField] float framesPerSecond = 16f;
        [Tooltip("Frames queued before playback (re)starts")]
        [SerializeField] int startFrames = 4;
        [Tooltip("Jitter buffer capacity in frames; 0 = automatic: (chunks in flight + 1) x frames per chunk, what the server can send before an ack plus one chunk")]
        [SerializeField] int capacityFrames = 0;
        [SerializeField] FilterMode filterMode = FilterMode.Bilinear;

        [Header("Clock")]
        [Tooltip("Play on Time.deltaTime (time scale 0 pauses the video, 0.5 slows it down) instead of Time.unscaledDeltaTime")]
        [SerializeField] bool followTimeScale = false;
        [Tooltip("Most seconds one Update advances the video clock: a longer frame (a hitch, the app back from the background, the editor unpaused) counts as this long")]
        [SerializeField] float maxClockStep = 0.25f;
        [Tooltip("After a stall: Delay shows the next frame in line (nothing dropped, the video ends later); Skip jumps to the frame due now")]
        [SerializeField] JitterCatchUp catchUp = JitterCatchUp.Delay;

        /// <summary>A shot's first frame is on screen.</summary>
        [Header("On-screen events")]
        public ShotOnScreenEvent shotPresented = new ShotOnScreenEvent();
        /// <summary>A shot has ended on screen: its last frame was shown for its full frame time (the next frame replaced
        /// it, or playback ran dry after it), or another shot's frame replaced it (a cut).</summary>
        public ShotOnScreenEvent shotEnded = new ShotOnScreenEvent();
        /// <summary>Every frame put on screen (no allocation per frame).</summary>
        public PresentedFrameEvent framePresented = new PresentedFrameEvent();

        // The frames pushed with their shot, in arrival order (one entry per chunk).
        struct Segment { public long First, Last; public string EventId; public uint ShotIndex; public bool LastInShot; }
        readonly Queue<Segment> segments = new Queue<Segment>();
        bool onScreen;                 // a tagged shot is on screen (shot below)
        bool endDue;                   // its last frame is on screen: it ends when that frame's time is over
        ShotOnScreen shot;

        Texture2D texture;
        JitterBuffer jitter;
        MaterialPropertyBlock block;
        int width, height;
        long pushedFrames;
        long presentedFrameIndex = -1;
        double playbackTime;
        bool paused;

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
        /// <summary>Shader texture property the Renderer shows the frames through ("_MainTex"; "_BaseMap" for URP).</summary>
        public string TextureProperty
        {
            get { return textureProperty; }
            set
            {
                if (string.IsNullOrEmpty(value)) throw new ArgumentException("a texture property name is needed", nameof(value));
                textureProperty = value;
                Bind();
            }
        }
        public RenderTexture RenderTarget { get { return renderTexture; } set { renderTexture = value; } }
        /// <summary>Frames queued before playback (re)starts; applies at the next Configure/OnSessionOpened.</summary>
        public int StartFrames { get { return startFrames; } set { startFrames = Math.Max(1, value); } }
        /// <summary>The client feeding this screen (the one whose Screen it is), or null; set by the client.</summary>
        public ShotStreamClient Client { get; internal set; }
        /// <summary>Play on Time.deltaTime (follows Time.timeScale) instead of Time.unscaledDeltaTime.</summary>
        public bool FollowTimeScale { get { return followTimeScale; } set { followTimeScale = value; } }
        /// <summary>Most seconds one <see cref="Advance"/> moves the video clock (positive).</summary>
        public float MaxClockStep
        {
            get { return maxClockStep > 0 ? maxClockStep : 0.25f; }
            set
            {
                if (!(value > 0)) throw new ArgumentOutOfRangeException(nameof(value), "the clock step must be positive");
                maxClockStep = value;
            }
        }
        /// <summary>What a stall does: Delay (nothing dropped, the default) or Skip (stay on the clock).</summary>
        public JitterCatchUp CatchUp
        {
            get { return catchUp; }
            set { catchUp = value; if (jitter != null) jitter.CatchUp = value; }
        }
        /// <summary>The video clock (seconds): what <see cref="Advance"/> accumulated. Frames are due on it.</summary>
        public double PlaybackTime { get { return playbackTime; } }
        /// <summary>True between <see cref="Pause"/> and <see cref="Resume"/>: the video clock stands still.</summary>
        public bool Paused { get { return paused; } }
        /// <summary>Holds the picture: the video clock stops, nothing is dropped, the queued frames wait (and their chunks
        /// stay unacked, so the server stops at its credit window).</summary>
        public void Pause() { paused = true; }
        /// <summary>Plays on from the frame on screen.</summary>
        public void Resume() { paused = false; }
        /// <summary>Jitter buffer capacity (0 = automatic from the session); applies at the next OnSessionOpened.</summary>
        public int CapacityFrames { get { return capacityFrames; } set { capacityFrames = Math.Max(0, value); } }

        /// <summary>Sizes the texture and jitter buffer for a session (RGBA8 frames only).</summary>
        public void OnSessionOpened(SessionOpened session)
        {
            if (session == null) throw new ArgumentNullException(nameof(session));
            if (session.FrameFormat != FrameFormat.Rgba8)
                throw new NotSupportedException("ShotStreamScreen needs FRAME_FORMAT_RGBA8 frames, the session uses " + ProtoEnums.Name(session.FrameFormat));
            uint perChunk = Math.Max(1u, Math.Max(session.FramesFirstChunk, session.FramesPerChunk));
            // Unacked chunks are all the server can send; their frames are all that can queue up here.
            long automatic = ((long)Math.Max(1u, session.MaxChunksInFlight) + 1) * perChunk;
            int capacity = capacityFrames > 0 ? capacityFrames : (int)Math.Min(MaxAutomaticCapacityFrames, automatic);
            // never wait for more frames than the first chunk brings (a short shot would stall)
            int start = session.FramesFirstChunk > 0 ? (int)Math.Min((uint)Math.Max(startFrames, 1), session.FramesFirstChunk) : startFrames;
            Configure((int)session.Width, (int)session.Height, session.Fps > 0 ? session.Fps : framesPerSecond, capacity, start);
        }

        /// <summary>Resizes for frames of another size, keeping the playback settings (fps, capacity, start
        /// threshold) of the current session; queued frames are dropped.</summary>
        public void Configure(int frameWidth, int frameHeight)
        {
            if (jitter != null) Configure(frameWidth, frameHeight, jitter.FramesPerSecond, jitter.Capacity, jitter.StartFrames);
            else Configure(frameWidth, frameHeight, framesPerSecond, capacityFrames > 0 ? capacityFrames : FallbackCapacityFrames, startFrames);
        }

        /// <summary>(Re)creates the texture when the size changes, and starts the jitter
        /// buffer afresh; its frame buffers are reused when the frame size and capacity are unchanged (a new
        /// session of the same server allocates nothing).</summary>
        public void Configure(int frameWidth, int frameHeight, double fps, int capacity, int start)
        {
            if (frameWidth < 1 || frameHeight < 1) throw new ArgumentOutOfRangeException(nameof(frameWidth), "frame size must be positive");
            if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), "capacity must be positive");
            start = Math.Min(Math.Max(start, 1), capacity);
            if (texture == null || width != frameWidth || height != frameHeight)
            {
                if (texture != null) DestroyObject(texture);
                texture = new Texture2D(frameWidth, frameHeight, TextureFormat.RGBA32, false);
                texture.name = "ShotStream frame";
                texture.filterMode = filterMode;
                texture.wrapMode = TextureWrapMode.Clamp;
                width = frameWidth; height = frameHeight;
            }
            if (jitter != null && jitter.FrameBytes == FrameBytes && jitter.Capacity == capacity) jitter.Reset(fps, start);
            else
            {
                if (jitter != null) jitter.Reset(jitter.FramesPerSecond, jitter.StartFrames);  // hands its shared chunk buffers back
                jitter = new JitterBuffer(FrameBytes, capacity, fps, start);
            }
            jitter.CatchUp = catchUp;
            pushedFrames = 0;
            presentedFrameIndex = -1;
            ForgetShots();
            Bind();
        }

        void Bind()
        {
            if (texture == null) return;
            if (rawImage != null) rawImage.texture = texture;
            if (targetRenderer != null)
            {
                // A property block leaves the shared material alone: Renderer.material would clone it, and the
                // clone would outlive this component.
                if (block == null) block = new MaterialPropertyBlock();
                targetRenderer.GetPropertyBlock(block);
                block.SetTexture(textureProperty, texture);
                targetRenderer.SetPropertyBlock(block);
            }
        }

        /// <summary>Queues <paramref name="frameCount"/> top-down RGBA frames from source[offset..]
        /// (copied: the source may be reused right after). Returns the frames accepted.</summary>
        public int PushFrames(byte[] source, int offset, int frameCount)
        {
            return PushFrames(source, offset, frameCount, Time.realtimeSinceStartupAsDouble);
        }

        public int PushFrames(byte[] source, int offset, int frameCount, double nowSeconds)
        {
            return PushFrames(source, offset, frameCount, nowSeconds, null, 0, false);
        }

        /// <summary>Queues frames of shot <paramref name="shotIndex"/> (cue <paramref name="eventId"/>), so that the screen
        /// raises <see cref="shotPresented"/> and <see cref="shotEnded"/> for it; <paramref name="lastInShot"/>: these are the
        /// shot's last frames. What the client does with each chunk. Returns the frames accepted.</summary>
        public int PushFrames(byte[] source, int offset, int frameCount, double nowSeconds, string eventId, uint shotIndex, bool lastInShot)
        {
            if (jitter == null) throw new InvalidOperationException("ShotStreamScreen is not configured (no session opened yet)");
            int accepted = jitter.Push(source, offset, frameCount, nowSeconds);
            Tag(accepted, frameCount, eventId, shotIndex, lastInShot);
            return accepted;
        }

        /// <summary>Queues <paramref name="frameCount"/> top-down RGBA frames of <paramref name="buffer"/>[offset..] by
        /// reference, without copying: when it returns more than 0 the buffer is the screen's until
        /// <paramref name="release"/>(buffer) is called, once its frames have left the screen (or the screen is reconfigured
        /// or released); when it returns 0 (full) it stays the caller's. What the client does with each chunk.</summary>
        public int PushChunk(byte[] buffer, int offset, int frameCount, double nowSeconds, Action<byte[]> release,
                             string eventId = null, uint shotIndex = 0, bool lastInShot = false)
        {
            if (jitter == null) throw new InvalidOperationException("ShotStreamScreen is not configured (no session opened yet)");
            int accepted = jitter.PushShared(buffer, offset, frameCount, nowSeconds, release);
            Tag(accepted, frameCount, eventId, shotIndex, lastInShot);
            return accepted;
        }

        void Tag(int accepted, int frameCount, string eventId, uint shotIndex, bool lastInShot)
        {
            if (accepted > 0 && eventId != null)
                segments.Enqueue(new Segment { First = pushedFrames, Last = pushedFrames + accepted - 1, EventId = eventId, ShotIndex = shotIndex,
                                               LastInShot = lastInShot && accepted == frameCount });
            pushedFrames += accepted;
        }

        /// <summary>Shows the frame due at <paramref name="nowSeconds"/> (on the screen's video clock); true when a new
        /// frame was uploaded. Raises the on-screen events.</summary>
        public bool Present(double nowSeconds)
        {
            if (jitter == null) return false;
            JitterFrame frame;
            if (!jitter.TryGetFrame(nowSeconds, out frame)) return false;
            if (!frame.IsNew)
            {
                // the shot's last frame has had its time and nothing replaced it: the shot is over
                if (endDue && frame.IsHeld) EndShot(nowSeconds);
                return false;
            }
            presentedFrameIndex = frame.FrameIndex;
            Upload(frame.Buffer, frame.Offset);
            OnFramePresented(frame.FrameIndex, nowSeconds);
            return true;
        }

        void OnFramePresented(long index, double now)
        {
            // The segment of this frame; the ones before it are over (frames skipped under CatchUp.Skip included).
            bool tagged = false;
            Segment seg = default(Segment);
            while (segments.Count > 0)
            {
                seg = segments.Peek();
                if (seg.Last >= index) { tagged = seg.First <= index; break; }
                segments.Dequeue();
                if (seg.LastInShot && onScreen && SameShot(seg)) endDue = true;  // its last frames were skipped
            }
            if (onScreen && (!tagged || !SameShot(seg) || endDue)) EndShot(now);
            if (tagged && !onScreen)
            {
                onScreen = true;
                shot = new ShotOnScreen { EventId = seg.EventId, ShotIndex = seg.ShotIndex, FirstFrame = index, FramesShown = 0, PlaybackTime = now };
                Raise(shotPresented, shot);
            }
            var info = new PresentedFrame { FrameIndex = index, EventId = tagged ? seg.EventId : "", ShotIndex = tagged ? seg.ShotIndex : 0,
                                            FrameInShot = tagged ? shot.FramesShown : 0, PlaybackTime = now };
            if (tagged)
            {
                shot.FramesShown++;
                if (seg.LastInShot && index == seg.Last) endDue = true;
            }
            Raise(framePresented, info);
        }

        bool SameShot(Segment seg) { return seg.ShotIndex == shot.ShotIndex && seg.EventId == shot.EventId; }

        void EndShot(double now)
        {
            onScreen = endDue = false;
            var ended = shot;
            ended.PlaybackTime = now;
            Raise(shotEnded, ended);
        }

        void ForgetShots()
        {
            segments.Clear();
            onScreen = endDue = false;
            shot = default(ShotOnScreen);
        }

        // A listener's exception is logged and goes no further: the frame is on screen all the same.
        static void Raise<T>(UnityEngine.Events.UnityEvent<T> e, T arg)
        {
            try { e.Invoke(arg); }
            catch (Exception x) { Debug.LogException(x); }
        }

        /// <summary>Uploads one top-down RGBA frame at source[offset..]: its rows written straight into the texture's memory,
        /// bottom row first (one copy), Apply(false), then the RenderTexture blit.</summary>
        public void Upload(byte[] source, int offset)
        {
            if (texture == null) throw new InvalidOperationException("ShotStreamScreen is not configured");
            if (source == null) throw new ArgumentNullException(nameof(source));
            int rowBytes = width * BytesPerPixel;
            if (offset < 0 || (long)offset + (long)rowBytes * height > source.Length) throw new ArgumentOutOfRangeException(nameof(offset));
            NativeArray<byte> raw = texture.GetRawTextureData<byte>();
            for (int y = 0; y < height; y++)
                NativeArray<byte>.Copy(source, offset + y * rowBytes, raw, (height - 1 - y) * rowBytes, rowBytes);
            texture.Apply(false);
            if (renderTexture != null) Graphics.Blit(texture, renderTexture);
        }

        /// <summary>Destroys the texture and frees the frame buffers (until the next Configure). Safe in edit and
        /// play mode; the editor preview calls it because Unity sends no OnDestroy there.</summary>
        public void Release()
        {
            if (texture != null) DestroyObject(texture);
            texture = null;
            if (jitter != null) jitter.Reset(jitter.FramesPerSecond, jitter.StartFrames);  // hands shared chunk buffers back
            jitter = null;
            width = height = 0;
            pushedFrames = 0;
            presentedFrameIndex = -1;
            ForgetShots();
        }

        // Destroy is deferred to the end of the frame and only allowed in play mode; in edit mode Unity
        // refuses it (and the texture would leak), so DestroyImmediate there.
        static void DestroyObject(UnityEngine.Object o)
        {
            if (Application.isPlaying) Destroy(o);
            else DestroyImmediate(o);
        }

        /// <summary>Moves the video clock by <paramref name="deltaSeconds"/> (at most <see cref="MaxClockStep"/>; nothing
        /// while paused or for a negative step) and shows the frame due then; true when a new frame was uploaded. Update
        /// calls it with the frame's delta time; call it yourself to drive the screen from another clock.</summary>
        public bool Advance(double deltaSeconds)
        {
            if (!paused && deltaSeconds > 0) playbackTime += Math.Min(deltaSeconds, MaxClockStep);
            return Present(playbackTime);
        }

        void Update() { Advance(followTimeScale ? Time.deltaTime : Time.unscaledDeltaTime); }

        void OnDestroy() { Release(); }
    }
}
