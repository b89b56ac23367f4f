package framework

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenServer is a registry authorization server on loopback, speaking the
// token protocol Docker Hub uses: Docker asks it for a bearer token (with a
// user name and password, or with an identity token, i.e. an OAuth2 refresh
// token), and presents the token to a registry started with
// RegistryOptions.Token, which checks its signature against CertFile.
// Every user may pull and push every repository.
type TokenServer struct {
	URL      string
	Service  string
	Issuer   string
	CertFile string

	key     *rsa.PrivateKey
	certDER []byte
	users   map[string]string
	server  *http.Server

	mu            sync.Mutex        // guards refresh and refreshGrants
	refresh       map[string]string // identity (refresh) token → user
	refreshGrants int               // tokens issued for an identity token
}

// StartTokenServer starts a token server for these user → password pairs;
// it is stopped when tb ends.
func StartTokenServer(tb testing.TB, users map[string]string) *TokenServer {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth-test-token-issuer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile := filepath.Join(tb.TempDir(), "token-issuer.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ts := &TokenServer{
		URL:      "http://" + l.Addr().String(),
		Service:  "berth-test-registry",
		Issuer:   "berth-test-issuer",
		CertFile: certFile,
		key:      key,
		certDER:  der,
		users:    users,
		refresh:  map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", ts.serveToken)
	ts.server = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = ts.server.Serve(l) }()
	tb.Cleanup(func() { _ = ts.server.Close() })
	return ts
}

// IdentityToken returns a new identity token for user, as a registry
// login hands out (Docker keeps it as "identitytoken" in its config).
func (ts *TokenServer) IdentityToken(user string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := "idt-" + base64.RawURLEncoding.EncodeToString(b[:])
	ts.mu.Lock()
	ts.refresh[tok] = user
	ts.mu.Unlock()
	return tok
}

// RefreshGrants is how many tokens were issued in exchange for an
// identity token.
func (ts *TokenServer) RefreshGrants() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refreshGrants
}

// AccessToken returns a bearer token granting user pull access to repo,
// what a client passes as a registry token.
func (ts *TokenServer) AccessToken(user, repo string) string {
	return ts.sign(user, []string{"repository:" + repo + ":pull"})
}

// serveToken answers GET (basic authentication) and POST (OAuth2 password
// and refresh_token grants) token requests.
func (ts *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	user := ""
	switch {
	case r.Method == http.MethodPost && r.PostForm.Get("grant_type") == "refresh_token":
		ts.mu.Lock()
		user = ts.refresh[r.PostForm.Get("refresh_token")]
		if user != "" {
			ts.refreshGrants++
		}
		ts.mu.Unlock()
	case r.Method == http.MethodPost && r.PostForm.Get("grant_type") == "password":
		user = ts.check(r.PostForm.Get("username"), r.PostForm.Get("password"))
	default:
		if u, p, ok := r.BasicAuth(); ok {
			user = ts.check(u, p)
		} else {
			user = "anonymous"
		}
	}
	if user == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}`))
		return
	}
	var scopes []string
	if user != "anonymous" {
		for _, s := range r.Form["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
	}
	tok := ts.sign(user, scopes)
	resp := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   300,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (ts *TokenServer) check(user, pass string) string {
	if want, ok := ts.users[user]; ok && want == pass && user != "" {
		return user
	}
	return ""
}

// sign returns a JWT (RS256, with the issuer certificate in x5c) granting
// the scopes ("repository:name:pull,push").
func (ts *TokenServer) sign(user string, scopes []string) string {
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, s := range scopes {
		typ, rest, ok := strings.Cut(s, ":")
		i := strings.LastIndex(rest, ":")
		if !ok || i < 0 {
			continue
		}
		grants = append(grants, access{Type: typ, Name: rest[:i], Actions: strings.Split(rest[i+1:], ",")})
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]any{
		"typ": "JWT",
		"alg": "RS256",
		"x5c": []string{base64.StdEncoding.EncodeToString(ts.certDER)},
	})
	var jti [8]byte
	_, _ = rand.Read(jti[:])
	claims, _ := json.Marshal(map[string]any{
		"iss":    ts.Issuer,
		"sub":    user,
		"aud":    ts.Service,
		"exp":    now.Add(5 * time.Minute).Unix(),
		"nbf":    now.Add(-time.Minute).Unix(),
		"iat":    now.Unix(),
		"jti":    base64.RawURLEncoding.EncodeToString(jti[:]),
		"access": grants,
	})
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, ts.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}
