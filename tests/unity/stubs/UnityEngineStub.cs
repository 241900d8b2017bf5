// A stub of ONLY the UnityEngine / UnityEngine.UI / UnityEngine.Events / UnityEngine.Experimental.Rendering / Unity.Collections
// APIs that unity_plugin/com.shotstream.bridge uses (Runtime/Unity, Editor, the sample, Tests), with Unity
// 2021.3's signatures. Compiled to UnityEngine.dll by tests/test_unity_package.py; the package is then
// compiled against it, so a call to an API that is missing here fails the build (add it here only after
// checking it exists in Unity 2021.3). Runtime/Core is compiled without it (noEngineReferences).
// Texture2D records GetRawTextureData/Apply calls so tests can check uploads. Where Unity enforces a rule
// at run time only with a log line (Destroy in edit mode), the stub throws, so a test that breaks it fails.
// C# 7.2.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; } = "";
        /// <summary>Unity logs "Destroy may not be called from edit mode! Use DestroyImmediate instead." and leaks
        /// the object; the stub throws instead.</summary>
        public static void Destroy(Object obj)
        {
            if (!Application.isPlaying)
                throw new UnityException("Destroy may not be called from edit mode! Use DestroyImmediate instead.\nDestroying an object in edit mode destroys it permanently.");
            if (obj != null) obj.destroyed = true;
        }
        public static void DestroyImmediate(Object obj) { if (obj != null) obj.destroyed = true; }
        public HideFlags hideFlags { get; set; }
        internal bool destroyed;
        public bool IsDestroyedForTests { get { return destroyed; } }
        public static implicit operator bool(Object o) { return !ReferenceEquals(o, null) && !o.destroyed; }
    }

    public sealed class GameObject : Object
    {
        internal readonly List<Component> components = new List<Component>();
        public GameObject() { }
        public GameObject(string name) { this.name = name; }
        public T AddComponent<T>() where T : Component, new()
        {
            var c = new T();
            c.gameObject = this;
            components.Add(c);
            return c;
        }
    }

    public class Component : Object
    {
        public GameObject gameObject { get; internal set; }
    }

    public class Behaviour : Component
    {
        public bool enabled { get; set; } = true;
        /// <summary>Unity: enabled and its GameObject active in the hierarchy; the stub's GameObjects are always active.</summary>
        public bool isActiveAndEnabled { get { return enabled; } }
    }
    public class MonoBehaviour : Behaviour { }

    public class ScriptableObject : Object
    {
        public static T CreateInstance<T>() where T : ScriptableObject, new() { return new T(); }
    }

    public enum TextureFormat { Alpha8 = 1, RGB24 = 3, RGBA32 = 4, ARGB32 = 5, BGRA32 = 14 }
    public enum FilterMode { Point = 0, Bilinear = 1, Trilinear = 2 }
    public enum TextureWrapMode { Repeat = 0, Clamp = 1 }

    public class Texture : Object
    {
        public virtual int width { get; set; }
        public virtual int height { get; set; }
        public FilterMode filterMode { get; set; }
        public TextureWrapMode wrapMode { get; set; }
    }

    public sealed class Texture2D : Texture
    {
        public readonly TextureFormat format;
        public readonly bool mipChain;
        byte[] data;
        // test hooks (not Unity API): what was uploaded, and how often
        public int GetRawTextureDataCalls;
        public int ApplyCalls;
        public byte[] RawDataForTests { get { return data; } }

        public Texture2D(int width, int height, TextureFormat textureFormat, bool mipChain)
        {
            if (width < 1 || height < 1) throw new ArgumentException("Texture2D size must be positive");
            this.width = width; this.height = height; format = textureFormat; this.mipChain = mipChain;
            int bpp = textureFormat == TextureFormat.RGBA32 || textureFormat == TextureFormat.ARGB32 || textureFormat == TextureFormat.BGRA32 ? 4
                    : textureFormat == TextureFormat.RGB24 ? 3 : 1;
            data = new byte[width * height * bpp];
        }

        /// <summary>Unity: the texture's CPU-side pixel memory itself (no copy), rows bottom first; valid until the texture
        /// changes or is destroyed; Apply uploads it. The stub's is a view of the bytes RawDataForTests returns.</summary>
        public Unity.Collections.NativeArray<T> GetRawTextureData<T>() where T : struct
        {
            if (typeof(T) != typeof(byte)) throw new NotSupportedException("the stub hands out bytes only");
            if (destroyed) throw new UnityException("the texture has been destroyed");
            GetRawTextureDataCalls++;
            return (Unity.Collections.NativeArray<T>)(object)new Unity.Collections.NativeArray<byte>(data);
        }

        public void Apply(bool updateMipmaps) { ApplyCalls++; }
    }

    public static class ImageConversion
    {
        /// <summary>Unity: a PNG of <paramref name="array"/>, rows in texture order (bottom row first), thread-safe.
        /// The stub's "PNG" is the bytes "PNG", width and height (u32 LE each) and then the rows as given, so a test
        /// can check what was encoded.</summary>
        public static byte[] EncodeArrayToPNG(Array array, UnityEngine.Experimental.Rendering.GraphicsFormat format, uint width, uint height, uint rowBytes = 0)
        {
            var data = (byte[])array;
            if (format != UnityEngine.Experimental.Rendering.GraphicsFormat.R8G8B8A8_SRGB) throw new ArgumentException("the stub encodes RGBA8 only");
            if (data.Length < width * height * 4) throw new ArgumentException("array is smaller than width x height pixels");
            var png = new byte[11 + width * height * 4];
            png[0] = (byte)'P'; png[1] = (byte)'N'; png[2] = (byte)'G';
            BitConverter.GetBytes(width).CopyTo(png, 3);
            BitConverter.GetBytes(height).CopyTo(png, 7);
            Buffer.BlockCopy(data, 0, png, 11, (int)(width * height * 4));
            return png;
        }
    }

    public static class Application
    {
        /// <summary>Test hook (not Unity API): play mode (true, the default) or edit mode.</summary>
        public static bool PlayingForTests = true;
        public static bool isPlaying { get { return PlayingForTests; } }
        /// <summary>Test hook (not Unity API): the platform the player runs on.</summary>
        public static RuntimePlatform PlatformForTests = RuntimePlatform.LinuxEditor;
        public static RuntimePlatform platform { get { return PlatformForTests; } }
        /// <summary>Test hook (not Unity API): the folder persistentDataPath returns (null: the property throws, as a test that
        /// forgot to set it should fail rather than write to a real user folder).</summary>
        public static string PersistentDataPathForTests;
        /// <summary>Unity: a folder for data kept between runs (per user and product; main thread only).</summary>
        public static string persistentDataPath
        {
            get
            {
                if (PersistentDataPathForTests == null) throw new InvalidOperationException("the stub's persistentDataPath is not set (PersistentDataPathForTests)");
                return PersistentDataPathForTests;
            }
        }
    }

    public enum RuntimePlatform { OSXEditor = 0, OSXPlayer = 1, WindowsPlayer = 2, WindowsEditor = 7, IPhonePlayer = 8, Android = 11, LinuxPlayer = 13, LinuxEditor = 16, WebGLPlayer = 17 }

    [Flags] public enum HideFlags { None = 0, HideInHierarchy = 1, HideInInspector = 2, DontSaveInEditor = 4, NotEditable = 8, DontSaveInBuild = 16, DontUnloadUnusedAsset = 32, DontSave = 52, HideAndDontSave = 61 }
    public enum ScaleMode { StretchToFill = 0, ScaleAndCrop = 1, ScaleToFit = 2 }

    public struct Rect
    {
        public float x, y, width, height;
        public Rect(float x, float y, float width, float height) { this.x = x; this.y = y; this.width = width; this.height = height; }
    }

    public sealed class GUILayoutOption { }

    public static class GUILayout
    {
        public static bool Button(string text, params GUILayoutOption[] options) { return false; }
        public static GUILayoutOption MinHeight(float minHeight) { return new GUILayoutOption(); }
    }

    public static class GUILayoutUtility
    {
        public static Rect GetAspectRect(float aspect) { return new Rect(0, 0, 1, 1 / aspect); }
    }

    public enum KeyCode { None = 0, Alpha1 = 49, Alpha2 = 50, Alpha3 = 51, C = 99, T = 116 }

    public static class Input
    {
        /// <summary>Test hook (not Unity API): which keys read as pressed this frame.</summary>
        public static Func<KeyCode, bool> KeyDown = k => false;
        public static bool GetKeyDown(KeyCode key) { return KeyDown(key); }
    }

    public sealed class RenderTexture : Texture
    {
        public RenderTexture(int width, int height, int depth) { this.width = width; this.height = height; }
    }

    public static class Graphics
    {
        // test hooks (not Unity API)
        public static int BlitCalls;
        public static Texture LastBlitSource;
        public static RenderTexture LastBlitDest;
        public static void Blit(Texture source, RenderTexture dest) { BlitCalls++; LastBlitSource = source; LastBlitDest = dest; }
    }

    public class Material : Object { }

    public sealed class MaterialPropertyBlock
    {
        readonly Dictionary<string, Texture> textures = new Dictionary<string, Texture>();
        public void SetTexture(string name, Texture value) { textures[name] = value; }
        public Texture GetTexture(string name) { Texture t; return textures.TryGetValue(name, out t) ? t : null; }
        internal void CopyTo(MaterialPropertyBlock dest)
        {
            dest.textures.Clear();
            foreach (var kv in textures) dest.textures[kv.Key] = kv.Value;
        }
    }

    /// <summary>Holds its own copy of the property block, as Unity does (Get/SetPropertyBlock copy).</summary>
    public class Renderer : Component
    {
        readonly MaterialPropertyBlock block = new MaterialPropertyBlock();
        public void GetPropertyBlock(MaterialPropertyBlock dest) { block.CopyTo(dest); }
        public void SetPropertyBlock(MaterialPropertyBlock properties) { properties.CopyTo(block); }
    }

    /// <summary>Unity: a coroutine's <c>yield return</c> of it resumes once keepWaiting is false (Unity calls MoveNext each frame).</summary>
    public abstract class CustomYieldInstruction : System.Collections.IEnumerator
    {
        public abstract bool keepWaiting { get; }
        public object Current { get { return null; } }
        public bool MoveNext() { return keepWaiting; }
        public virtual void Reset() { }
    }

    public class UnityException : Exception { public UnityException(string message) : base(message) { } }

    public enum LogType { Error = 0, Assert = 1, Warning = 2, Log = 3, Exception = 4 }

    public static class Debug
    {
        /// <summary>Test hook (not Unity API): where log lines go (default: Console.Error).</summary>
        public static Action<LogType, string> Sink = (t, m) => Console.Error.WriteLine(t + ": " + m);
        public static void Log(object message) { Sink(LogType.Log, Convert.ToString(message)); }
        public static void LogWarning(object message) { Sink(LogType.Warning, Convert.ToString(message)); }
        public static void LogError(object message) { Sink(LogType.Error, Convert.ToString(message)); }
        public static void LogException(Exception exception) { Sink(LogType.Exception, Convert.ToString(exception)); }
    }

    public static class Time
    {
        /// <summary>Test hook (not Unity API): the clock; defaults to a Stopwatch.</summary>
        public static Func<double> Clock = () => System.Diagnostics.Stopwatch.GetTimestamp() / (double)System.Diagnostics.Stopwatch.Frequency;
        public static double realtimeSinceStartupAsDouble { get { return Clock(); } }
        /// <summary>Test hook (not Unity API): the real duration of the current frame, what unscaledDeltaTime reads.</summary>
        public static float FrameSecondsForTests = 1f / 60f;
        public static float timeScale { get; set; } = 1f;
        public static float unscaledDeltaTime { get { return FrameSecondsForTests; } }
        /// <summary>Unity: the frame's duration capped at Time.maximumDeltaTime (1/3 s by default), times timeScale.</summary>
        public static float deltaTime { get { return Math.Min(FrameSecondsForTests, 1f / 3f) * timeScale; } }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class SerializeField : Attribute { }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = false)]
    public class TooltipAttribute : Attribute { public readonly string tooltip; public TooltipAttribute(string tooltip) { this.tooltip = tooltip; } }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = true)]
    public class HeaderAttribute : Attribute { public readonly string header; public HeaderAttribute(string header) { this.header = header; } }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = false)]
    public sealed class MinAttribute : Attribute { public readonly float min; public MinAttribute(float min) { this.min = min; } }

    [AttributeUsage(AttributeTargets.Field, Inherited = true, AllowMultiple = false)]
    public sealed class TextAreaAttribute : Attribute { public TextAreaAttribute() { } public TextAreaAttribute(int minLines, int maxLines) { } }

    [AttributeUsage(AttributeTargets.Class, Inherited = false)]
    public sealed class CreateAssetMenuAttribute : Attribute
    {
        public string menuName { get; set; }
        public string fileName { get; set; }
        public int order { get; set; }
    }

    [AttributeUsage(AttributeTargets.Class, Inherited = false)]
    public sealed class DisallowMultipleComponent : Attribute { }

    [AttributeUsage(AttributeTargets.Class, Inherited = false, AllowMultiple = false)]
    public sealed class AddComponentMenu : Attribute { public AddComponentMenu(string menuName) { } }
}

namespace UnityEngine
{
    /// <summary>Unity: what resolves exposed references in a PlayableGraph (a PlayableDirector is one).</summary>
    public interface IExposedPropertyTable { }

    /// <summary>Unity: a name as a hashed id (a notification's id).</summary>
    public struct PropertyName
    {
        readonly string name;
        public PropertyName(string name) { this.name = name ?? ""; }
        public override string ToString() { return name ?? ""; }
    }
}

// UnityEngine.Playables (DirectorModule): only what Runtime/Timeline uses. A playable is a handle to state the graph
// owns; the stub's holds it in a class. Test hooks (not Unity API) create graphs and drive them as Timeline would.
namespace UnityEngine.Playables
{
    public interface IPlayable { PlayableHandle GetHandle(); }
    public interface IPlayableBehaviour { }

    /// <summary>Stub only: the state behind a playable handle.</summary>
    public sealed class PlayableHandle
    {
        internal PlayableGraph Graph;
        internal double Speed = 1;
        internal double Time;
        internal object Behaviour;
    }

    public struct Playable : IPlayable
    {
        readonly PlayableHandle handle;
        internal Playable(PlayableHandle handle) { this.handle = handle; }
        public PlayableHandle GetHandle() { return handle; }
        /// <summary>Test hook (not Unity API): the playable's behaviour (null for none), for the Timeline stub's evaluation.</summary>
        public PlayableBehaviour BehaviourForTests { get { return handle != null ? handle.Behaviour as PlayableBehaviour : null; } }
    }

    /// <summary>Unity: a message a playable sends to the receivers of its output's target (Timeline: a marker's).</summary>
    public interface INotification { PropertyName id { get; } }

    /// <summary>Unity: a component that receives the notifications sent to its GameObject.</summary>
    public interface INotificationReceiver { void OnNotify(Playable origin, INotification notification, object context); }

    public enum PlayState { Paused = 0, Playing = 1 }

    public enum DirectorWrapMode { Hold = 0, Loop = 1, None = 2 }

    public struct FrameData { }

    public struct PlayableGraph
    {
        readonly IExposedPropertyTable resolver;
        readonly List<Playable> roots;
        PlayableGraph(IExposedPropertyTable resolver) { this.resolver = resolver; roots = new List<Playable>(); }
        /// <summary>Test hook (not Unity API): a graph resolved by <paramref name="resolver"/> (Timeline: its PlayableDirector).</summary>
        public static PlayableGraph CreateForTests(IExposedPropertyTable resolver) { return new PlayableGraph(resolver); }
        /// <summary>Test hook (not Unity API): makes a playable the graph's root (Timeline's is the timeline playable).</summary>
        public void AddRootForTests(Playable p) { roots.Add(p); }
        public IExposedPropertyTable GetResolver() { return resolver; }
        public Playable GetRootPlayable(int index) { return roots[index]; }
    }

    public struct ScriptPlayable<T> : IPlayable where T : class, IPlayableBehaviour, new()
    {
        readonly PlayableHandle handle;
        ScriptPlayable(PlayableHandle handle) { this.handle = handle; }
        public static ScriptPlayable<T> Create(PlayableGraph graph, int inputCount = 0)
        {
            return new ScriptPlayable<T>(new PlayableHandle { Graph = graph, Behaviour = new T() });
        }
        public PlayableHandle GetHandle() { return handle; }
        public T GetBehaviour() { return (T)handle.Behaviour; }
        public static implicit operator Playable(ScriptPlayable<T> playable) { return new Playable(playable.handle); }
        public static explicit operator ScriptPlayable<T>(Playable playable)
        {
            if (!(playable.GetHandle().Behaviour is T)) throw new InvalidCastException("the playable's behaviour is not a " + typeof(T).Name);
            return new ScriptPlayable<T>(playable.GetHandle());
        }
    }

    public static class PlayableExtensions
    {
        public static PlayableGraph GetGraph<U>(this U playable) where U : struct, IPlayable { return playable.GetHandle().Graph; }
        public static double GetTime<U>(this U playable) where U : struct, IPlayable { return playable.GetHandle().Time; }
        public static double GetSpeed<U>(this U playable) where U : struct, IPlayable { return playable.GetHandle().Speed; }
        public static void SetSpeed<U>(this U playable, double value) where U : struct, IPlayable { playable.GetHandle().Speed = value; }
    }

    public abstract class PlayableBehaviour : IPlayableBehaviour
    {
        public virtual void OnGraphStop(Playable playable) { }
        public virtual void ProcessFrame(Playable playable, FrameData info, object playerData) { }
    }

    public abstract class PlayableAsset : ScriptableObject
    {
        public abstract Playable CreatePlayable(PlayableGraph graph, GameObject owner);
        /// <summary>Unity: the asset's duration in seconds (infinite unless the asset says).</summary>
        public virtual double duration { get { return double.PositiveInfinity; } }
    }

    /// <summary>Unity's PlayableDirector. The stub plays an asset as the player loop would (DirectorUpdateMode.GameTime) when
    /// the test calls <see cref="StepAllForTests"/>: time advances by the frame's seconds times the graph's root speed, the
    /// root playable processes the frame (with the director as its player data), and at the asset's end a director with
    /// DirectorWrapMode.None stops (OnGraphStop, then <see cref="stopped"/>).</summary>
    public sealed class PlayableDirector : Behaviour, IExposedPropertyTable
    {
        static readonly List<PlayableDirector> playing = new List<PlayableDirector>();
        readonly Dictionary<Object, Object> bindings = new Dictionary<Object, Object>();

        /// <summary>The timeline's current time, seconds.</summary>
        public double time { get; set; }
        /// <summary>Test hook (not Unity API): the graph playableGraph returns.</summary>
        public PlayableGraph GraphForTests;
        public PlayableGraph playableGraph { get { return GraphForTests; } }
        public PlayableAsset playableAsset { get; set; }
        public bool playOnAwake { get; set; } = true;
        public DirectorWrapMode extrapolationMode { get; set; } = DirectorWrapMode.Hold;
        public PlayState state { get { return playing.Contains(this) ? PlayState.Playing : PlayState.Paused; } }
        public double duration { get { return playableAsset != null ? playableAsset.duration : 0; } }
        public event Action<PlayableDirector> stopped;

        public void SetGenericBinding(Object key, Object value) { bindings[key] = value; }
        public Object GetGenericBinding(Object key) { Object value; return key != null && bindings.TryGetValue(key, out value) ? value : null; }

        /// <summary>Unity: builds the asset's graph and plays it from the start.</summary>
        public void Play(PlayableAsset asset)
        {
            if (asset == null) throw new ArgumentNullException(nameof(asset));
            if (playing.Contains(this)) Stop();
            playableAsset = asset;
            time = 0;
            GraphForTests = PlayableGraph.CreateForTests(this);
            GraphForTests.AddRootForTests(asset.CreatePlayable(GraphForTests, gameObject));
            playing.Add(this);
        }

        /// <summary>Unity: stops playback and destroys the graph (its behaviours get OnGraphStop); raises stopped.</summary>
        public void Stop()
        {
            if (!playing.Remove(this)) return;
            var root = GraphForTests.GetRootPlayable(0);
            if (root.BehaviourForTests != null) root.BehaviourForTests.OnGraphStop(root);
            time = 0;
            if (stopped != null) stopped(this);
        }

        /// <summary>Test hook (not Unity API): one frame of <paramref name="deltaTime"/> seconds for every playing director.</summary>
        public static void StepAllForTests(double deltaTime)
        {
            foreach (var director in playing.ToArray())
            {
                var root = director.GraphForTests.GetRootPlayable(0);
                director.time += deltaTime * root.GetSpeed();
                bool end = director.extrapolationMode == DirectorWrapMode.None && director.time >= director.duration;
                if (end) director.time = director.duration;
                if (root.BehaviourForTests != null) root.BehaviourForTests.ProcessFrame(root, default(FrameData), director);
                if (end) director.Stop();
            }
        }

        /// <summary>Test hook (not Unity API): what Unity does with a notification sent to this director's GameObject: every
        /// component on it that is an INotificationReceiver gets it.</summary>
        public void PushNotificationForTests(Playable origin, INotification notification)
        {
            foreach (var component in gameObject.components.ToArray())
            {
                var receiver = component as INotificationReceiver;
                if (receiver != null) receiver.OnNotify(origin, notification, null);
            }
        }
    }
}

namespace Unity.Collections
{
    /// <summary>Unity's NativeArray&lt;T&gt;: a view of native memory (here, of a managed array). Only what the package uses:
    /// Length and Copy from a managed array, bounds-checked as Unity's (ArgumentOutOfRangeException).</summary>
    public struct NativeArray<T> where T : struct
    {
        readonly T[] array;
        internal NativeArray(T[] array) { this.array = array; }
        public int Length { get { return array == null ? 0 : array.Length; } }
        public static void Copy(T[] src, int srcIndex, NativeArray<T> dst, int dstIndex, int length)
        {
            if (src == null) throw new ArgumentNullException(nameof(src));
            if (dst.array == null) throw new ObjectDisposedException("NativeArray");
            if (length < 0 || srcIndex < 0 || srcIndex + length > src.Length) throw new ArgumentOutOfRangeException(nameof(srcIndex));
            if (dstIndex < 0 || dstIndex + length > dst.array.Length) throw new ArgumentOutOfRangeException(nameof(dstIndex));
            Array.Copy(src, srcIndex, dst.array, dstIndex, length);
        }
    }
}

namespace UnityEngine.Experimental.Rendering
{
    public enum GraphicsFormat { None = 0, R8G8B8A8_SRGB = 4 }
}

namespace UnityEngine.Events
{
    public delegate void UnityAction<T0>(T0 arg0);
    public delegate void UnityAction<T0, T1>(T0 arg0, T1 arg1);

    public abstract class UnityEventBase { }

    [Serializable]
    public abstract class UnityEvent<T0> : UnityEventBase
    {
        readonly List<UnityAction<T0>> calls = new List<UnityAction<T0>>();
        public void AddListener(UnityAction<T0> call) { calls.Add(call); }
        public void RemoveListener(UnityAction<T0> call) { calls.Remove(call); }
        public void Invoke(T0 arg0) { foreach (var c in calls.ToArray()) c(arg0); }
    }

    [Serializable]
    public abstract class UnityEvent<T0, T1> : UnityEventBase
    {
        readonly List<UnityAction<T0, T1>> calls = new List<UnityAction<T0, T1>>();
        public void AddListener(UnityAction<T0, T1> call) { calls.Add(call); }
        public void Invoke(T0 arg0, T1 arg1) { foreach (var c in calls.ToArray()) c(arg0, arg1); }
    }
}

namespace UnityEngine.UI
{
    public class RawImage : Behaviour
    {
        public Texture texture { get; set; }
    }
}
