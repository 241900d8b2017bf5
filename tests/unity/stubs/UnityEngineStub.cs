// A stub of ONLY the UnityEngine / UnityEngine.UI / UnityEngine.Events APIs that
// unity_plugin/com.shotstream.bridge/Runtime uses. Compiled to UnityEngine.dll by
// tests/test_unity_package.py; the package is then compiled against it, so a call to an API that
// is missing here fails the build (add it here only after checking it exists in Unity 2021.3).
// Texture2D records LoadRawTextureData/Apply calls so tests can check uploads. C# 7.2.
using System;
using System.Collections.Generic;

namespace UnityEngine
{
    public class Object
    {
        public string name { get; set; } = "";
        public static void Destroy(Object obj) { if (obj != null) obj.destroyed = true; }
        public static void DestroyImmediate(Object obj) { if (obj != null) obj.destroyed = true; }
        public HideFlags hideFlags { get; set; }
        internal bool destroyed;
        public bool IsDestroyedForTests { get { return destroyed; } }
        public static implicit operator bool(Object o) { return !ReferenceEquals(o, null) && !o.destroyed; }
    }

    public sealed class GameObject : Object
    {
        readonly List<Component> components = new List<Component>();
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

    public class Behaviour : Component { public bool enabled { get; set; } = true; }
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
        public int LoadRawTextureDataCalls;
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

        public void LoadRawTextureData(byte[] data)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            // Unity: "LoadRawTextureData: not enough data provided (will result in overread)."
            if (data.Length < this.data.Length) throw new UnityException("LoadRawTextureData: not enough data provided (will result in overread).");
            Buffer.BlockCopy(data, 0, this.data, 0, this.data.Length);
            LoadRawTextureDataCalls++;
        }

        public void Apply(bool updateMipmaps) { ApplyCalls++; }
        public void Apply(bool updateMipmaps, bool makeNoLongerReadable) { ApplyCalls++; }
    }

    public static class ImageConversion
    {
        public static byte[] EncodeToPNG(this Texture2D tex) { return new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }; }
    }

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

    public enum KeyCode { None = 0, Alpha1 = 49, Alpha2 = 50, Alpha3 = 51, T = 116 }

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

    public class Material : Object
    {
        public Texture mainTexture { get; set; }
    }

    public class Renderer : Component
    {
        public Material material { get; set; }
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

namespace UnityEngine.Events
{
    public delegate void UnityAction();
    public delegate void UnityAction<T0>(T0 arg0);

    public abstract class UnityEventBase { }

    [Serializable]
    public class UnityEvent : UnityEventBase
    {
        readonly List<UnityAction> calls = new List<UnityAction>();
        public void AddListener(UnityAction call) { calls.Add(call); }
        public void RemoveListener(UnityAction call) { calls.Remove(call); }
        public void RemoveAllListeners() { calls.Clear(); }
        public void Invoke() { foreach (var c in calls.ToArray()) c(); }
    }

    [Serializable]
    public abstract class UnityEvent<T0> : UnityEventBase
    {
        readonly List<UnityAction<T0>> calls = new List<UnityAction<T0>>();
        public void AddListener(UnityAction<T0> call) { calls.Add(call); }
        public void RemoveListener(UnityAction<T0> call) { calls.Remove(call); }
        public void RemoveAllListeners() { calls.Clear(); }
        public void Invoke(T0 arg0) { foreach (var c in calls.ToArray()) c(arg0); }
    }
}

namespace UnityEngine.UI
{
    public class RawImage : Behaviour
    {
        public Texture texture { get; set; }
    }
}
