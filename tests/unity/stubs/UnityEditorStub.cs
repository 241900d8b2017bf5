// A stub of ONLY the UnityEditor APIs that unity_plugin/com.shotstream.bridge/Editor uses. Compiled to
// UnityEditor.dll by tests/test_unity_package.py against UnityEngineStub.cs; the editor code is then
// compiled against both, so a call to an API missing here fails the build (add it here only after
// checking it exists in Unity 2021.3). C# 7.2.
using System;
using UnityEngine;

namespace UnityEditor
{
    public class EditorWindow : ScriptableObject
    {
        public static T GetWindow<T>(string title) where T : EditorWindow, new() { return new T(); }
        public void Repaint() { }
    }

    [AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
    public sealed class MenuItem : Attribute { public MenuItem(string itemName) { } }

    public static class EditorApplication
    {
        public delegate void CallbackFunction();
        public static CallbackFunction update;
    }

    public static class AssemblyReloadEvents
    {
        public delegate void AssemblyReloadCallback();
        public static event AssemblyReloadCallback beforeAssemblyReload;
        /// <summary>Test hook (not Unity API): what Unity does right before it unloads the domain.</summary>
        public static void RaiseBeforeAssemblyReloadForTests() { var e = beforeAssemblyReload; if (e != null) e(); }
    }

    public sealed class GUIStyle { }

    public static class EditorStyles { public static GUIStyle boldLabel { get { return new GUIStyle(); } } }

    public enum MessageType { None = 0, Info = 1, Warning = 2, Error = 3 }

    public static class EditorGUILayout
    {
        public static string TextField(string label, string text, params GUILayoutOption[] options) { return text; }
        public static string PasswordField(string label, string password, params GUILayoutOption[] options) { return password; }
        public static string TextArea(string text, params GUILayoutOption[] options) { return text; }
        public static int IntField(string label, int value, params GUILayoutOption[] options) { return value; }
        public static bool Toggle(string label, bool value, params GUILayoutOption[] options) { return value; }
        public static System.Enum EnumPopup(string label, System.Enum selected, params GUILayoutOption[] options) { return selected; }
        public static void LabelField(string label, params GUILayoutOption[] options) { }
        public static void LabelField(string label, GUIStyle style, params GUILayoutOption[] options) { }
        public static void LabelField(string label, string label2, params GUILayoutOption[] options) { }
        public static void HelpBox(string message, MessageType type) { }
        public static Rect BeginHorizontal(params GUILayoutOption[] options) { return new Rect(); }
        public static void EndHorizontal() { }
    }

    public static class EditorGUI
    {
        public static void DrawPreviewTexture(Rect position, Texture image, Material mat, ScaleMode scaleMode) { }
        public static void BeginDisabledGroup(bool disabled) { }
        public static void EndDisabledGroup() { }
    }

    public static class EditorUtility
    {
        public static string SaveFolderPanel(string title, string folder, string defaultName) { return ""; }
        public static void RevealInFinder(string path) { }
    }
}
