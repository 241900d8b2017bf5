// A small, strict JSON reader/writer: enough for proto3 JSON (RFC 8259, no extensions).
// No UnityEngine references; C# 7.2.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace ShotStream.Core
{
    /// <summary>Malformed JSON, or a JSON value of the wrong shape for a message field.</summary>
    public sealed class JsonException : FormatException
    {
        public JsonException(string message) : base(message) { }
    }

    public enum JsonKind { Null, Bool, Number, String, Array, Object }

    /// <summary>A parsed JSON value. Numbers keep their source text so 64-bit integers lose nothing.</summary>
    public sealed class JsonValue
    {
        public static readonly JsonValue Null = new JsonValue(JsonKind.Null);
        public static readonly JsonValue True = new JsonValue(JsonKind.Bool) { boolValue = true };
        public static readonly JsonValue False = new JsonValue(JsonKind.Bool) { boolValue = false };

        public readonly JsonKind Kind;
        bool boolValue;
        string text;  // string value, or number literal
        List<JsonValue> items;
        List<KeyValuePair<string, JsonValue>> members;  // in source order

        JsonValue(JsonKind kind) { Kind = kind; }

        public static JsonValue FromString(string s)
        {
            if (s == null) throw new ArgumentNullException(nameof(s));
            return new JsonValue(JsonKind.String) { text = s };
        }
        public static JsonValue FromNumberText(string literal) { return new JsonValue(JsonKind.Number) { text = literal }; }
        public static JsonValue FromBool(bool b) { return b ? True : False; }
        public static JsonValue NewArray() { return new JsonValue(JsonKind.Array) { items = new List<JsonValue>() }; }
        public static JsonValue NewObject() { return new JsonValue(JsonKind.Object) { members = new List<KeyValuePair<string, JsonValue>>() }; }

        public bool AsBool { get { Expect(JsonKind.Bool); return boolValue; } }
        public string AsString { get { Expect(JsonKind.String); return text; } }
        public string NumberText { get { Expect(JsonKind.Number); return text; } }
        public IReadOnlyList<JsonValue> Items { get { Expect(JsonKind.Array); return items; } }
        public IReadOnlyList<KeyValuePair<string, JsonValue>> Members { get { Expect(JsonKind.Object); return members; } }

        public JsonValue this[string key]
        {
            get
            {
                Expect(JsonKind.Object);
                for (int i = 0; i < members.Count; i++) if (members[i].Key == key) return members[i].Value;
                return null;
            }
        }

        public JsonValue Add(JsonValue item) { Expect(JsonKind.Array); items.Add(item ?? Null); return this; }
        public JsonValue Set(string key, JsonValue value)
        {
            Expect(JsonKind.Object);
            for (int i = 0; i < members.Count; i++)
                if (members[i].Key == key) { members[i] = new KeyValuePair<string, JsonValue>(key, value ?? Null); return this; }
            members.Add(new KeyValuePair<string, JsonValue>(key, value ?? Null));
            return this;
        }

        void Expect(JsonKind kind)
        {
            if (Kind != kind) throw new JsonException("expected a JSON " + Name(kind) + ", got " + Name(Kind));
        }

        internal static string Name(JsonKind k)
        {
            switch (k)
            {
                case JsonKind.Null: return "null";
                case JsonKind.Bool: return "boolean";
                case JsonKind.Number: return "number";
                case JsonKind.String: return "string";
                case JsonKind.Array: return "array";
                default: return "object";
            }
        }

        public override string ToString() { return Json.Write(this); }
    }

    public static class Json
    {
        public const int MaxDepth = 64;

        // -- reader ---------------------------------------------------------------------------

        public static JsonValue Parse(string text)
        {
            if (text == null) throw new ArgumentNullException(nameof(text));
            var r = new Reader(text);
            r.SkipWs();
            JsonValue v = r.ReadValue(0);
            r.SkipWs();
            if (r.Pos != text.Length) throw r.Error("unexpected data after the JSON value");
            return v;
        }

        public static JsonValue Parse(byte[] utf8, int offset, int count)
        {
            string s;
            try { s = new UTF8Encoding(false, true).GetString(utf8, offset, count); }
            catch (ArgumentException e) { throw new JsonException("JSON text is not valid UTF-8: " + e.Message); }
            return Parse(s);
        }

        struct Reader
        {
            readonly string s;
            public int Pos;
            public Reader(string s) { this.s = s; Pos = 0; }

            public JsonException Error(string what)
            {
                return new JsonException("malformed JSON at offset " + Pos + ": " + what);
            }

            public void SkipWs()
            {
                while (Pos < s.Length)
                {
                    char c = s[Pos];
                    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') Pos++; else break;
                }
            }

            public JsonValue ReadValue(int depth)
            {
                if (depth > MaxDepth) throw Error("nesting deeper than " + MaxDepth);
                if (Pos >= s.Length) throw Error("unexpected end of input");
                char c = s[Pos];
                switch (c)
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return JsonValue.FromString(ReadString());
                    case 't': Literal("true"); return JsonValue.True;
                    case 'f': Literal("false"); return JsonValue.False;
                    case 'n': Literal("null"); return JsonValue.Null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Error("unexpected character '" + c + "'");
                }
            }

            void Literal(string word)
            {
                if (string.CompareOrdinal(s, Pos, word, 0, word.Length) != 0) throw Error("invalid literal (expected " + word + ")");
                Pos += word.Length;
            }

            JsonValue ReadObject(int depth)
            {
                Pos++;  // {
                var obj = JsonValue.NewObject();
                var seen = new HashSet<string>();
                SkipWs();
                if (Pos < s.Length && s[Pos] == '}') { Pos++; return obj; }
                while (true)
                {
                    SkipWs();
                    if (Pos >= s.Length || s[Pos] != '"') throw Error("expected a string key");
                    string key = ReadString();
                    if (!seen.Add(key)) throw Error("duplicate key \"" + key + "\"");
                    SkipWs();
                    if (Pos >= s.Length || s[Pos] != ':') throw Error("expected ':'");
                    Pos++;
                    SkipWs();
                    obj.Set(key, ReadValue(depth + 1));
                    SkipWs();
                    if (Pos >= s.Length) throw Error("unterminated object");
                    if (s[Pos] == ',') { Pos++; continue; }
                    if (s[Pos] == '}') { Pos++; return obj; }
                    throw Error("expected ',' or '}'");
                }
            }

            JsonValue ReadArray(int depth)
            {
                Pos++;  // [
                var arr = JsonValue.NewArray();
                SkipWs();
                if (Pos < s.Length && s[Pos] == ']') { Pos++; return arr; }
                while (true)
                {
                    SkipWs();
                    arr.Add(ReadValue(depth + 1));
                    SkipWs();
                    if (Pos >= s.Length) throw Error("unterminated array");
                    if (s[Pos] == ',') { Pos++; continue; }
                    if (s[Pos] == ']') { Pos++; return arr; }
                    throw Error("expected ',' or ']'");
                }
            }

            string ReadString()
            {
                Pos++;  // opening quote
                StringBuilder sb = null;
                int start = Pos;
                while (true)
                {
                    if (Pos >= s.Length) throw Error("unterminated string");
                    char c = s[Pos];
                    if (c == '"')
                    {
                        string result = sb == null ? s.Substring(start, Pos - start) : sb.Append(s, start, Pos - start).ToString();
                        Pos++;
                        return result;
                    }
                    if (c < 0x20) throw Error("control character in string (must be escaped)");
                    if (c != '\\') { Pos++; continue; }
                    if (sb == null) sb = new StringBuilder();
                    sb.Append(s, start, Pos - start);
                    Pos++;
                    if (Pos >= s.Length) throw Error("unterminated escape");
                    char e = s[Pos++];
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u':
                        {
                            char u = Hex4();
                            if (char.IsHighSurrogate(u))
                            {
                                if (Pos + 6 > s.Length || s[Pos] != '\\' || s[Pos + 1] != 'u')
                                    throw Error("high surrogate \\u" + ((int)u).ToString("X4") + " not followed by a low surrogate");
                                Pos += 2;
                                char lo = Hex4();
                                if (!char.IsLowSurrogate(lo)) throw Error("high surrogate followed by \\u" + ((int)lo).ToString("X4") + ", not a low surrogate");
                                sb.Append(u).Append(lo);
                            }
                            else if (char.IsLowSurrogate(u)) throw Error("unpaired low surrogate \\u" + ((int)u).ToString("X4"));
                            else sb.Append(u);
                            break;
                        }
                        default: Pos--; throw Error("invalid escape '\\" + e + "'");
                    }
                    start = Pos;
                }
            }

            char Hex4()
            {
                if (Pos + 4 > s.Length) throw Error("truncated \\u escape");
                int v = 0;
                for (int i = 0; i < 4; i++)
                {
                    char c = s[Pos + i];
                    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                    if (d < 0) throw Error("invalid hex digit in \\u escape");
                    v = v * 16 + d;
                }
                Pos += 4;
                return (char)v;
            }

            JsonValue ReadNumber()
            {
                int start = Pos;
                if (s[Pos] == '-') Pos++;
                if (Pos >= s.Length) throw Error("truncated number");
                if (s[Pos] == '0') Pos++;
                else if (s[Pos] >= '1' && s[Pos] <= '9') { while (Pos < s.Length && char.IsDigit(s[Pos]) && s[Pos] <= '9') Pos++; }
                else throw Error("invalid number");
                if (Pos < s.Length && s[Pos] == '.')
                {
                    Pos++;
                    int d = Pos;
                    while (Pos < s.Length && s[Pos] >= '0' && s[Pos] <= '9') Pos++;
                    if (Pos == d) throw Error("digits expected after '.'");
                }
                if (Pos < s.Length && (s[Pos] == 'e' || s[Pos] == 'E'))
                {
                    Pos++;
                    if (Pos < s.Length && (s[Pos] == '+' || s[Pos] == '-')) Pos++;
                    int d = Pos;
                    while (Pos < s.Length && s[Pos] >= '0' && s[Pos] <= '9') Pos++;
                    if (Pos == d) throw Error("digits expected in exponent");
                }
                return JsonValue.FromNumberText(s.Substring(start, Pos - start));
            }
        }

        // -- writer ---------------------------------------------------------------------------

        public static string Write(JsonValue v)
        {
            var sb = new StringBuilder();
            Write(v, sb);
            return sb.ToString();
        }

        public static void Write(JsonValue v, StringBuilder sb)
        {
            switch (v.Kind)
            {
                case JsonKind.Null: sb.Append("null"); break;
                case JsonKind.Bool: sb.Append(v.AsBool ? "true" : "false"); break;
                case JsonKind.Number: sb.Append(v.NumberText); break;
                case JsonKind.String: WriteString(v.AsString, sb); break;
                case JsonKind.Array:
                {
                    sb.Append('[');
                    var items = v.Items;
                    for (int i = 0; i < items.Count; i++) { if (i > 0) sb.Append(','); Write(items[i], sb); }
                    sb.Append(']');
                    break;
                }
                default:
                {
                    sb.Append('{');
                    var m = v.Members;
                    for (int i = 0; i < m.Count; i++)
                    {
                        if (i > 0) sb.Append(',');
                        WriteString(m[i].Key, sb);
                        sb.Append(':');
                        Write(m[i].Value, sb);
                    }
                    sb.Append('}');
                    break;
                }
            }
        }

        /// <summary>Quoted, escaped; non-ASCII stays as is (UTF-8 on the wire); lone surrogates are rejected.</summary>
        public static void WriteString(string s, StringBuilder sb)
        {
            sb.Append('"');
            for (int i = 0; i < s.Length; i++)
            {
                char c = s[i];
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4"));
                        else if (char.IsHighSurrogate(c))
                        {
                            if (i + 1 >= s.Length || !char.IsLowSurrogate(s[i + 1])) throw new JsonException("string has an unpaired surrogate at index " + i);
                            sb.Append(c).Append(s[++i]);
                        }
                        else if (char.IsLowSurrogate(c)) throw new JsonException("string has an unpaired surrogate at index " + i);
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }

        // -- number helpers (proto3 JSON accepts numbers or strings for integers) ---------------

        internal static ulong ToUInt64(JsonValue v, string field)
        {
            string t = v.Kind == JsonKind.String ? v.AsString : v.Kind == JsonKind.Number ? v.NumberText : null;
            if (t == null) throw new JsonException("field " + field + ": expected an integer (number or string), got " + JsonValue.Name(v.Kind));
            ulong r;
            if (ulong.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out r)) return r;
            double d;
            if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out d) && d >= 0 && d == Math.Floor(d) && d < 18446744073709551616.0)
                return (ulong)d;
            throw new JsonException("field " + field + ": \"" + t + "\" is not an unsigned 64-bit integer");
        }

        internal static uint ToUInt32(JsonValue v, string field)
        {
            ulong r = ToUInt64(v, field);
            if (r > uint.MaxValue) throw new JsonException("field " + field + ": " + r + " does not fit in uint32");
            return (uint)r;
        }

        internal static double ToDouble(JsonValue v, string field)
        {
            if (v.Kind == JsonKind.Number) return double.Parse(v.NumberText, NumberStyles.Float, CultureInfo.InvariantCulture);
            if (v.Kind == JsonKind.String)
            {
                switch (v.AsString)
                {
                    case "NaN": return double.NaN;
                    case "Infinity": return double.PositiveInfinity;
                    case "-Infinity": return double.NegativeInfinity;
                }
                double d;
                if (double.TryParse(v.AsString, NumberStyles.Float, CultureInfo.InvariantCulture, out d)) return d;
            }
            throw new JsonException("field " + field + ": expected a number, got " + JsonValue.Name(v.Kind));
        }

        public static JsonValue Number(uint v) { return JsonValue.FromNumberText(v.ToString(CultureInfo.InvariantCulture)); }
        public static JsonValue Number(double v)
        {
            if (double.IsNaN(v)) return JsonValue.FromString("NaN");
            if (double.IsPositiveInfinity(v)) return JsonValue.FromString("Infinity");
            if (double.IsNegativeInfinity(v)) return JsonValue.FromString("-Infinity");
            string t = v.ToString("R", CultureInfo.InvariantCulture).Replace("E", "e");
            if (t.IndexOf('.') < 0 && t.IndexOf('e') < 0) t += ".0";  // as Python's json_format writes floats
            return JsonValue.FromNumberText(t);
        }
        public static JsonValue UInt64String(ulong v) { return JsonValue.FromString(v.ToString(CultureInfo.InvariantCulture)); }
    }
}
