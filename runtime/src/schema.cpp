// schema.cpp — a small recursive-descent parser for op schema strings.
#include "schema.hpp"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "internal.hpp"

namespace vt {

const char* tag_name(int32_t tag) {
  switch (tag) {
    case VT_NONE: return "None";
    case VT_TENSOR: return "Tensor";
    case VT_INT: return "int";
    case VT_FLOAT: return "float";
    case VT_BOOL: return "bool";
    case VT_INTS: return "int[]";
    case VT_STR: return "str";
    case VT_DTYPE: return "ScalarType";
    case VT_DEVICE: return "Device";
    case VT_TENSORS: return "Tensor[]";
    case VT_SCALAR: return "Scalar";
  }
  return "?";
}

namespace {

struct Parser {
  const std::string& s;
  size_t i = 0;
  std::string err;

  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool eat(const char* tok) {
    ws();
    size_t n = std::strlen(tok);
    if (s.compare(i, n, tok) == 0) {
      i += n;
      return true;
    }
    return false;
  }
  std::string ident() {
    ws();
    size_t b = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' ||
                            s[i] == ':' || s[i] == '.'))
      ++i;
    return s.substr(b, i - b);
  }
  bool fail(const std::string& what) {
    if (err.empty()) err = what + " at position " + std::to_string(i);
    return false;
  }

  bool type(int32_t* tag, bool* optional) {
    std::string t = ident();
    if (t == "Tensor") *tag = VT_TENSOR;
    else if (t == "int") *tag = VT_INT;
    else if (t == "float") *tag = VT_FLOAT;
    else if (t == "bool") *tag = VT_BOOL;
    else if (t == "str") *tag = VT_STR;
    else if (t == "ScalarType") *tag = VT_DTYPE;
    else if (t == "Device") *tag = VT_DEVICE;
    else if (t == "Scalar") *tag = VT_SCALAR;
    else return fail("unknown type '" + t + "'");
    if (*tag == VT_TENSOR && eat("[")) {
      if (!eat("]")) return fail("expected ']'");
      *tag = VT_TENSORS;
    } else if (*tag == VT_INT && eat("[")) {
      ws();
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;  // int[2]
      if (!eat("]")) return fail("expected ']'");
      *tag = VT_INTS;
    }
    *optional = eat("?");
    return true;
  }

  bool default_value(ArgSpec& a) {
    ws();
    size_t b = i;
    if (eat("None")) {
      if (!a.optional) return fail("default None for non-optional argument '" + a.name + "'");
      a.default_value.tag = VT_NONE;
    } else if (a.type == VT_INTS) {
      if (!eat("[")) return fail("expected '[' in int[] default");
      while (!eat("]")) {
        ws();
        char* end;
        long long v = std::strtoll(s.c_str() + i, &end, 10);
        if (end == s.c_str() + i) return fail("bad int in int[] default");
        i = static_cast<size_t>(end - s.c_str());
        a.default_ints.push_back(v);
        eat(",");
      }
      a.default_value.tag = VT_INTS;
    } else if (a.type == VT_BOOL) {
      if (eat("True")) a.default_value.v.b = 1;
      else if (eat("False")) a.default_value.v.b = 0;
      else return fail("bool default must be True or False");
      a.default_value.tag = VT_BOOL;
    } else if (a.type == VT_INT) {
      char* end;
      errno = 0;
      long long v = std::strtoll(s.c_str() + i, &end, 10);
      if (end == s.c_str() + i || errno == ERANGE || *end == '.' || *end == 'e' || *end == 'E')
        return fail("bad int default for '" + a.name + "'");
      i = static_cast<size_t>(end - s.c_str());
      a.default_value.tag = VT_INT;
      a.default_value.v.i = v;
    } else if (a.type == VT_SCALAR) {  // True/False, or a number: int unless it has '.'/'e'
      if (eat("True")) {
        a.default_value.tag = VT_BOOL;
        a.default_value.v.b = 1;
      } else if (eat("False")) {
        a.default_value.tag = VT_BOOL;
        a.default_value.v.b = 0;
      } else {
        char* end;
        double v = std::strtod(s.c_str() + i, &end);
        if (end == s.c_str() + i) return fail("bad Scalar default for '" + a.name + "'");
        const std::string text = s.substr(i, static_cast<size_t>(end - (s.c_str() + i)));
        i = static_cast<size_t>(end - s.c_str());
        if (text.find_first_of(".eEni") == std::string::npos) {
          a.default_value.tag = VT_INT;
          a.default_value.v.i = std::strtoll(text.c_str(), nullptr, 10);
        } else {
          a.default_value.tag = VT_FLOAT;
          a.default_value.v.f = v;
        }
      }
    } else if (a.type == VT_FLOAT) {
      char* end;
      double v = std::strtod(s.c_str() + i, &end);
      if (end == s.c_str() + i) return fail("bad number default for '" + a.name + "'");
      i = static_cast<size_t>(end - s.c_str());
      a.default_value.tag = VT_FLOAT;
      a.default_value.v.f = v;
    } else if (a.type == VT_STR) {
      ws();
      char q = i < s.size() ? s[i] : 0;
      if (q != '\'' && q != '"') return fail("str default must be quoted");
      size_t e = s.find(q, i + 1);
      if (e == std::string::npos) return fail("unterminated string default");
      a.default_str = s.substr(i + 1, e - i - 1);
      i = e + 1;
      a.default_value.tag = VT_STR;
    } else {
      return fail("only None is allowed as a default for '" + a.name + "'");
    }
    a.has_default = true;
    a.default_text = s.substr(b, i - b);
    return true;
  }

  bool parse(Schema* out) {
    out->name = ident();
    size_t sep = out->name.find("::");
    if (sep == std::string::npos || sep == 0 || sep + 2 >= out->name.size() ||
        out->name.find("::", sep + 2) != std::string::npos)
      return fail("op name must be 'namespace::name', got '" + out->name + "'");
    if (!eat("(")) return fail("expected '('");
    bool kwonly = false;
    if (!eat(")")) {
      for (;;) {
        if (eat("*")) {
          if (kwonly) return fail("a second '*'");
          kwonly = true;
        } else {
          ArgSpec a;
          if (!type(&a.type, &a.optional)) return false;
          a.name = ident();
          if (a.name.empty()) return fail("expected an argument name");
          for (auto& other : out->args)
            if (other.name == a.name) return fail("duplicate argument '" + a.name + "'");
          a.kwonly = kwonly;
          if (eat("=") && !default_value(a)) return false;
          if (!a.has_default && !out->args.empty() && out->args.back().has_default && !kwonly)
            return fail("argument '" + a.name + "' without default follows one with a default");
          out->args.push_back(std::move(a));
        }
        if (eat(")")) break;
        if (!eat(",")) return fail("expected ',' or ')'");
      }
    }
    if (out->args.size() > VT_MAX_ARGS) return fail("too many arguments");
    if (!eat("->")) return fail("expected '->'");
    auto ret = [&]() {
      int32_t tag;
      bool opt;
      if (!type(&tag, &opt)) return false;
      out->returns.push_back(tag);
      ident();  // an optional name for the output
      return true;
    };
    if (eat("(")) {
      if (!eat(")")) {
        for (;;) {
          if (!ret()) return false;
          if (eat(")")) break;
          if (!eat(",")) return fail("expected ',' or ')' in returns");
        }
      }
    } else if (!ret()) {
      return false;
    }
    ws();
    if (i != s.size()) return fail("trailing text");
    return true;
  }
};

}  // namespace

bool parse_schema(const std::string& text, Schema* out) {
  Parser p{text, 0, {}};
  out->text = text;
  if (!p.parse(out)) {
    set_error(VT_ERR_VALUE, "bad op schema '%s': %s", text.c_str(), p.err.c_str());
    return false;
  }
  // Point the defaults at their own storage now that the vectors are final.
  for (auto& a : out->args) {
    if (a.default_value.tag == VT_INTS) {
      a.default_value.v.ints.data = a.default_ints.data();
      a.default_value.v.ints.len = static_cast<int64_t>(a.default_ints.size());
    } else if (a.default_value.tag == VT_STR) {
      a.default_value.v.s = a.default_str.c_str();
    }
  }
  return true;
}

}  // namespace vt
