package sdbus

import (
	"reflect"

	"github.com/godbus/dbus/v5"
)

// Plain turns a value decoded by the D-Bus library into plain Go: variants
// are unwrapped, object paths and signatures become strings, and slices and
// maps are converted element by element (a map with variant values becomes
// map[string]any, an array of structs [][]any). Basic values, strings and
// byte slices are returned as they are.
func Plain(v any) any {
	switch x := v.(type) {
	case nil, bool, byte, int16, uint16, int32, uint32, int64, uint64, float64, string, []byte, []string:
		return x
	case dbus.Variant:
		return Plain(x.Value())
	case dbus.ObjectPath:
		return string(x)
	case dbus.Signature:
		return x.String()
	case []dbus.ObjectPath:
		out := make([]string, len(x))
		for i, p := range x {
			out[i] = string(p)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = Plain(e)
		}
		return out
	case map[string]dbus.Variant:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = Plain(e.Value())
		}
		return out
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = Plain(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		if rv.Type().Key().Kind() == reflect.String {
			out := make(map[string]any, rv.Len())
			for it := rv.MapRange(); it.Next(); {
				out[it.Key().String()] = Plain(it.Value().Interface())
			}
			return out
		}
		out := make(map[any]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[Plain(it.Key().Interface())] = Plain(it.Value().Interface())
		}
		return out
	}
	return v
}
